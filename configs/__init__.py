"""Checkout shortcuts: each ``configs/<name>.py`` re-exports ``mec_jax.configs.<name>`` (the source,
shipped with the package); ``configs/sweeps/`` holds the experiment grids."""
