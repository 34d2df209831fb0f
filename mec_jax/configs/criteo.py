"""Criteo_x1 (FuxiCTR/BARS CSVs train.csv/valid.csv/test.csv). Set --config.data.dir.

For the raw Kaggle train.txt use --config.data.name=criteo_kaggle.
"""

from mec_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "criteo_x1"
  config.data.dir = "data/criteo_x1"
  config.data.min_count = 10  # as in the BARS Criteo_x1 setting
  config.train.batch_size = 4096
  config.train.epochs = 3  # Criteo overfits after one epoch; early stopping decides
  config.quantize.min_vocab = 1000
  config.quantize.num_subspaces = 4
  config.quantize.codebook_size = 256
  config.quantize.epochs = 10
  return config
