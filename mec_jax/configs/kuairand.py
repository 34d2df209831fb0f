"""KuaiRand (Pure / 1K / 27K). Set --config.data.dir to the unpacked KuaiRand-<variant> folder."""

from mec_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "kuairand"
  config.data.variant = "1k"  # pure | 1k | 27k
  config.data.dir = "data/KuaiRand-1K"
  config.data.min_count = 2
  config.train.batch_size = 4096
  config.train.epochs = 5
  config.quantize.min_vocab = 1000  # video_id, author_id, music_id (and user_id on 1K/27K)
  config.quantize.num_subspaces = 4
  config.quantize.codebook_size = 256
  config.quantize.epochs = 10
  return config
