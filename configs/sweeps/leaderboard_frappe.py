"""Leaderboard grid on Frappe (compressed: user 957 ids, item 4,082).

Every registered method warm-started and from scratch, with stage C, at each budget
(`configs.sweeps.leaderboard_sweep`). Run and tabulate with ``bench/leaderboard.py`` (see
docs/leaderboard.md), or the whole grid with
``python -m mec_jax.experiments --config=configs/sweeps/leaderboard_frappe.py --workdir=DIR``.
"""

from configs import frappe
from configs.sweeps import SEEDS as SEEDS
from configs.sweeps import leaderboard_sweep

BUDGETS = [10.0, 25.0, 50.0, 100.0]
SWEEP = leaderboard_sweep(BUDGETS)
FINETUNE = True


def get_config():
  return frappe.get_config()
