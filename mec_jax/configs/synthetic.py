"""The embedded default: the whole pipeline on generated data, no download, minutes on a laptop CPU.

Criteo-shaped in miniature: two large Zipf-popular id fields, two mid-sized ones, four small ones and
two numeric fields. M=2 sub-spaces of K=256 codes (the DESIGN §4 setting that reaches ~60x on Criteo):
with vocabularies of tens of thousands the codebooks are a visible share of the compressed bytes, so M=4
would stop near 30x here. Measured on 2 CPU cores: full vs compressed test AUC within 0.001, ~38x
bit-packed over all embedding tables (bench/RESULTS.md).
"""

from mec_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "synthetic"
  config.data.synthetic.vocab_sizes = (200_000, 50_000, 10_000, 2_000, 100, 20, 10, 5)
  config.model.name = "deepfm"
  config.pretrain.model = "deepfm"
  config.train.patience = 1  # the planted data overfits after an epoch or two, like Criteo
  config.quantize.min_vocab = 1000
  config.quantize.num_subspaces = 2
  config.quantize.codebook_size = 256
  config.quantize.epochs = 10
  return config
