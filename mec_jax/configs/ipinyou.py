"""iPinYou (libFM-style train.fm.txt / test.fm.txt + featindex.fm.txt). Set --config.data.dir."""

from mec_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "ipinyou"
  config.data.dir = "../shared/data/ipinyou_sample"
  config.train.batch_size = 1024
  config.quantize.min_vocab = 1000  # IP
  config.quantize.num_subspaces = 4
  config.quantize.codebook_size = 256
  return config
