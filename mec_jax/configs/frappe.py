"""Frappe (libFM files). Set --config.data.dir to the folder holding frappe.*.libfm."""

from mec_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "frappe"
  config.data.dir = "../shared/data/frappe"
  config.train.batch_size = 1024
  # Tuned backbone (bench/backbones.py: DeepFM test AUC 0.957 on Frappe vs 0.930 without).
  config.model.dropout = 0.2
  config.model.batch_norm = True
  config.quantize.min_vocab = 300  # user (957) and item (4082)
  config.quantize.num_subspaces = 4
  config.quantize.codebook_size = 256
  return config
