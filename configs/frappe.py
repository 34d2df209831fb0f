"""Frappe (libFM files). Set --config.data.dir to the folder holding frappe.*.libfm."""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "frappe"
  config.data.dir = "../shared/data/frappe"
  config.train.batch_size = 1024
  config.quantize.min_vocab = 300  # user (957) and item (4082)
  config.quantize.num_subspaces = 4
  config.quantize.codebook_size = 256
  return config
