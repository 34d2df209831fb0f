"""The embedded default: the whole pipeline on generated data, no download, minutes on a laptop CPU."""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "synthetic"
  config.model.name = "deepfm"
  config.pretrain.model = "deepfm"
  config.quantize.min_vocab = 1000
  config.quantize.num_subspaces = 4
  config.quantize.codebook_size = 256
  return config
