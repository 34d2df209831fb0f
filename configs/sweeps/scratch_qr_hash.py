"""Hash and QR as their users train them: from scratch, at equal bytes (issue 23, item 2).

Run: ``SWEEP_DATASET=synthetic python -m mec_jax.experiments
--config=configs/sweeps/scratch_qr_hash.py --workdir=DIR`` (``SWEEP_DATASET``: ``synthetic``,
default, ``movielens``, or ``criteo_layout`` with ``SWEEP_DATA_DIR`` a Criteo_x1-layout CSV set,
``data.min_count=1``, the fields of >= 8,000 ids compressed; one workdir per dataset). Every cell starts its tables at random
(``compress.init_tables=random``) and trains a fresh backbone with every weight, tables included,
at ``train.learning_rate`` (``finetune.init_from_pretrain=False``,
``finetune.codebook_learning_rate=0``): the hashing trick, then QR with the mult combine.
MovieLens-100K cannot hold QR at 25x (its ``2 sqrt(V)`` floor caps it near 16x), so its budget is 15x.
"""

import os

from configs import criteo, movielens, synthetic
from configs.sweeps import SEEDS as SEEDS

DATASETS = {
  "synthetic": (synthetic, 25.0),
  "movielens": (movielens, 15.0),
  "criteo_layout": (criteo, 25.0),
}
DATASET = os.environ.get("SWEEP_DATASET", "synthetic")
if DATASET not in DATASETS:
  raise ValueError(f"SWEEP_DATASET={DATASET!r}; expected one of {sorted(DATASETS)}")
BUDGET = DATASETS[DATASET][1]
SCRATCH = {
  "compress.target_ratio": BUDGET,
  "compress.init_tables": "random",
  "finetune.init_from_pretrain": False,
  "finetune.codebook_learning_rate": 0.0,
}
QR = {"compress.method": "qr"} | SCRATCH
SWEEP = [
  {"compress.method": "hash"} | SCRATCH,
  QR | {"compress.qr_large_index": "remainder", "compress.qr_random_init": "sign"},
  # Before the fix: QREmbeddingBag's layout (large row v // c), the small table at ones.
  QR | {"compress.qr_large_index": "quotient", "compress.qr_random_init": "ones"},
  QR | {"compress.qr_large_index": "quotient", "compress.qr_random_init": "sign"},
  QR | {"compress.qr_large_index": "remainder", "compress.qr_random_init": "ones"},
  QR | {"compress.qr_large_index": "quotient", "compress.qr_random_init": "dlrm"},
]
FINETUNE = True


def get_config():
  config = DATASETS[DATASET][0].get_config()
  if DATASET == "criteo_layout":  # the new-user setting: every id kept, fields >= 8,000
    config.data.dir = os.environ["SWEEP_DATA_DIR"]
    config.data.min_count = 1
    config.quantize.min_vocab = 8000
  return config
