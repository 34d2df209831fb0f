"""CCE and ROBE-Z at 25x on the synthetic default, warm-started, with stage C (issue 23).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/synthetic_modern.py --workdir=DIR``.
The settings of ``synthetic_stage_c.py`` (whose table holds full, PQ, hash and QR at 25x): warm
start from stage A, stage-A weights frozen, the compressed tables trained at
``finetune.codebook_learning_rate``; the swap-in is kept when it validates better. Then both from
scratch, as ``synthetic_stage_c.py``'s from-scratch hash cell.
"""

from configs import synthetic
from configs.sweeps import SEEDS as SEEDS

BUDGET = 25.0
SWEEP = [
  {"compress.method": method, "compress.target_ratio": BUDGET} for method in ("cce", "robez")
] + [  # as their users train them: random tables, a fresh backbone, every weight trained
  {
    "compress.method": method,
    "compress.target_ratio": BUDGET,
    "compress.init_tables": "random",
    "finetune.init_from_pretrain": False,
    "finetune.codebook_learning_rate": 0.0,
  }
  for method in ("cce", "robez")
]
FINETUNE = True


def get_config():
  return synthetic.get_config()
