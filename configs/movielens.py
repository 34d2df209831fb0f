"""Re-export of `mec_jax/configs/movielens.py` (the source, shipped with the package); kept so that
`--config=configs/movielens.py` and `from configs import movielens` work in a checkout."""

from mec_jax.configs.movielens import get_config as get_config
