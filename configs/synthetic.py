"""Re-export of `mec_jax/configs/synthetic.py` (the source, shipped with the package); kept so that
`--config=configs/synthetic.py` and `from configs import synthetic` work in a checkout."""

from mec_jax.configs.synthetic import get_config as get_config
