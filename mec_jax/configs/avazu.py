"""Avazu_x1 (FuxiCTR/BARS CSVs train.csv/valid.csv/test.csv). Set --config.data.dir."""

from mec_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "avazu_x1"
  config.data.dir = "data/avazu_x1"
  config.data.min_count = 2
  config.train.batch_size = 4096
  config.train.epochs = 3
  config.quantize.min_vocab = 1000
  config.quantize.num_subspaces = 4
  config.quantize.codebook_size = 256
  config.quantize.epochs = 10
  return config
