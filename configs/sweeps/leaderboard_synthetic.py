"""Leaderboard grid on the synthetic default (configs/synthetic.py; the four fields with >= 1000 ids, ~84k ids).

Every registered method warm-started and from scratch, with stage C, at each budget
(`configs.sweeps.leaderboard_sweep`). Run and tabulate with ``bench/leaderboard.py`` (see
docs/leaderboard.md), or the whole grid with
``python -m mec_jax.experiments --config=configs/sweeps/leaderboard_synthetic.py --workdir=DIR``.
"""

from configs import synthetic
from configs.sweeps import SEEDS as SEEDS
from configs.sweeps import leaderboard_sweep

BUDGETS = [10.0, 25.0, 50.0, 100.0]
SWEEP = leaderboard_sweep(BUDGETS)
FINETUNE = True


def get_config():
  return synthetic.get_config()
