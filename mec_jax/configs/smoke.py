"""Seconds-long end-to-end run for tests: tiny synthetic data, tiny models, one epoch per stage."""

from mec_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "synthetic"
  syn = config.data.synthetic
  syn.num_rows = 6_000
  syn.vocab_sizes = (600, 300, 40, 8)
  syn.num_numeric = 1
  config.model.name = "deepfm"
  config.model.embed_dim = 8
  config.model.hidden_units = (32, 32)
  config.pretrain.model = "deepfm"
  config.train.batch_size = 512
  config.train.eval_batch_size = 2048
  config.train.epochs = 2
  config.train.checkpoint_every_steps = 5
  config.train.progress = False
  config.quantize.min_vocab = 200
  config.quantize.num_subspaces = 2
  config.quantize.codebook_size = 16
  config.quantize.epochs = 2
  config.quantize.batch_size = 256
  config.quantize.kmeans_iters = 5
  config.quantize.num_negatives = 2
  return config
