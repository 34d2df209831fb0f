"""Leaderboard grid on MovieLens-100K (compressed: user_id, item_id, zip3; ~3,000 ids).

Every registered method warm-started and from scratch, with stage C, at each budget
(`configs.sweeps.leaderboard_sweep`). Run and tabulate with ``bench/leaderboard.py`` (see
docs/leaderboard.md), or the whole grid with
``python -m mec_jax.experiments --config=configs/sweeps/leaderboard_movielens.py --workdir=DIR``.
"""

from configs import movielens
from configs.sweeps import SEEDS as SEEDS
from configs.sweeps import leaderboard_sweep

BUDGETS = [10.0, 25.0, 50.0, 100.0]
SWEEP = leaderboard_sweep(BUDGETS)
FINETUNE = True


def get_config():
  return movielens.get_config()
