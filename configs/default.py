"""Re-export of `mec_jax/configs/default.py` (the source, shipped with the package); kept so that
`--config=configs/default.py` and `from configs import default` work in a checkout."""

from mec_jax.configs.default import get_config as get_config
