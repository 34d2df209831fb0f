"""Re-export of `mec_jax/configs/kuairand.py` (the source, shipped with the package); kept so that
`--config=configs/kuairand.py` and `from configs import kuairand` work in a checkout."""

from mec_jax.configs.kuairand import get_config as get_config
