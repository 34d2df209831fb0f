"""Stage C for the baselines on the synthetic default, and the from-scratch hashing trick.

Run: ``python -m mec_jax.experiments --config=configs/sweeps/synthetic_stage_c.py --workdir=DIR``.
Every cell runs stage B and stage C (``FINETUNE = True``) at one 25x budget: PQ, hash and QR with
the default stage C (warm start from stage A, stage-A weights frozen, the compressed tables at
``finetune.codebook_learning_rate``; the swap-in is kept when it validates better), and the hashing
trick as users know it: buckets initialized at random and a fresh backbone trained from scratch
with every weight at ``train.learning_rate``; and PQ under that same protocol (the paper's stage C).
"""

from configs import synthetic
from configs.sweeps import SEEDS as SEEDS

BUDGET = 25.0
SWEEP = [
  {"compress.method": method, "compress.target_ratio": BUDGET} for method in ("pq", "hash", "qr")
] + [
  {
    "compress.method": "hash",
    "compress.target_ratio": BUDGET,
    "compress.init_tables": "random",
    "finetune.init_from_pretrain": False,
    "finetune.codebook_learning_rate": 0.0,
  },
  # The paper's stage C for PQ, the same protocol as the from-scratch hash cell: a fresh backbone
  # on the frozen stage-B codes, codebooks and every weight at train.learning_rate.
  {
    "compress.method": "pq",
    "compress.target_ratio": BUDGET,
    "finetune.init_from_pretrain": False,
    "finetune.codebook_learning_rate": 0.0,
  },
]
FINETUNE = True


def get_config():
  return synthetic.get_config()
