"""Re-export of `mec_jax/configs/ipinyou.py` (the source, shipped with the package); kept so that
`--config=configs/ipinyou.py` and `from configs import ipinyou` work in a checkout."""

from mec_jax.configs.ipinyou import get_config as get_config
