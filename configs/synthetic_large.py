"""Re-export of `mec_jax/configs/synthetic_large.py` (the source, shipped with the package); kept so that
`--config=configs/synthetic_large.py` and `from configs import synthetic_large` work in a checkout."""

from mec_jax.configs.synthetic_large import get_config as get_config
