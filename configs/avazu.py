"""Re-export of `mec_jax/configs/avazu.py` (the source, shipped with the package); kept so that
`--config=configs/avazu.py` and `from configs import avazu` work in a checkout."""

from mec_jax.configs.avazu import get_config as get_config
