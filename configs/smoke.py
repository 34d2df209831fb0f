"""Re-export of `mec_jax/configs/smoke.py` (the source, shipped with the package); kept so that
`--config=configs/smoke.py` and `from configs import smoke` work in a checkout."""

from mec_jax.configs.smoke import get_config as get_config
