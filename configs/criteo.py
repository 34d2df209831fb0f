"""Re-export of `mec_jax/configs/criteo.py` (the source, shipped with the package); kept so that
`--config=configs/criteo.py` and `from configs import criteo` work in a checkout."""

from mec_jax.configs.criteo import get_config as get_config
