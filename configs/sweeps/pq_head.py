"""Popularity-split PQ (``pq_head``) against PQ at 25x and 50x on the synthetic default (issue 23).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/pq_head.py --workdir=DIR``.
Stage C as in ``synthetic_modern.py`` (warm start from stage A, stage-A weights frozen, the
compressed tables trained at ``finetune.codebook_learning_rate``; the swap-in is kept when it
validates better). ``pq_head`` tries ``compress.head_fraction`` (0, 0.1, 0.25, 0.5) and keeps
the fraction whose swap-in validates best (its scores: ``report.json`` ``head_selection``).
``pq_head_movielens.py`` is the same grid on MovieLens-100K.
"""

from configs import synthetic
from configs.sweeps import SEEDS as SEEDS

BUDGETS = [25.0, 50.0]
SWEEP = [
  {"compress.method": method, "compress.target_ratio": ratio}
  for ratio in BUDGETS
  for method in ("pq", "pq_head")
]
FINETUNE = True


def get_config():
  return synthetic.get_config()
