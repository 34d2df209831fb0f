"""MovieLens-100K (RecBole atomic files ml-100k.inter/.user/.item). Set --config.data.dir."""

from mec_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "movielens"
  config.data.dir = "../shared/data/movielens_100k"
  config.train.batch_size = 1024
  # No dropout / batch norm: DeepFM test AUC 0.7882 without (bench/pipeline_quality.py) vs 0.7848
  # with dropout 0.2 + batch norm (bench/backbones.py), unlike Frappe.
  config.quantize.min_vocab = 300  # user_id (943), item_id (1682), zip3 (~382)
  config.quantize.num_subspaces = 4
  config.quantize.codebook_size = 256
  return config
