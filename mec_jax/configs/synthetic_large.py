"""Criteo-shaped synthetic data at scale: 5M rows, 26 categorical fields with Criteo's spread of
vocabularies (a 4M-value field realizing ~2.2M train ids, two of 100k-400k, a few mid-sized, many
tiny) and 13 numeric fields. Needs no download; the whole pipeline runs on a 2-core CPU machine.

Per-field Zipf skews (``data.synthetic.zipf_exponents``): 0.5 for the huge field, so that millions
of its values occur, as Criteo's hashed ids do; 1.1 (the default) for the small ones. One epoch per
training stage (the two tables of >= `train.sparse_min_rows` ids train row-sparse) and two quantizer
epochs: the whole run took 22 min on the 2-core machine (peak RSS 7.0 GB). Fields of
>= 50k ids are compressed with M=2 sub-spaces of K=256 codes: 2 bytes per row instead of 160
(d=40 float32), 78.2x on those fields. Measured times, peak RSS and AUCs: bench/RESULTS.md
("synthetic_large end to end").

  python -m mec_jax.main --config=configs/synthetic_large.py \\
    --workdir=/tmp/synthetic_large
"""

from mec_jax.configs import default

VOCAB_SIZES = (
  4_000_000, 400_000, 100_000, 30_000, 10_000, 5_000, 2_000, 1_000, 500, 300, 200, 100, 60, 40,
  30, 20, 15, 10, 8, 6, 5, 4, 4, 3, 3, 2,
)  # fmt: skip
ZIPF_EXPONENTS = (0.5, 0.9, 1.0, 1.05) + (1.1,) * (len(VOCAB_SIZES) - 4)


def get_config():
  config = default.get_config()
  data = config.data
  data.name = "synthetic"
  data.synthetic.num_rows = 5_000_000  # 4M train / 0.5M valid / 0.5M test
  data.synthetic.vocab_sizes = VOCAB_SIZES
  data.synthetic.zipf_exponents = ZIPF_EXPONENTS
  data.synthetic.num_numeric = 13
  config.model.name = "deepfm"
  config.pretrain.model = "deepfm"
  config.train.batch_size = 8192  # half the steps of 4096
  config.train.eval_batch_size = 65536
  config.train.epochs = 1  # one pass over 4M rows: the planted data peaks after one or two
  config.train.patience = 1
  config.train.checkpoint_every_steps = 2000
  config.train.sparse_optimizer = "lazy_adam"  # the measured run's (rowwise_adagrad: less memory)
  config.quantize.min_vocab = 50_000
  config.quantize.num_subspaces = 2
  config.quantize.codebook_size = 256
  config.quantize.epochs = 2
  return config
