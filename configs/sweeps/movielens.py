"""Baselines at equal bytes on MovieLens-100K (compressed: user_id, item_id, zip3).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/movielens.py --workdir=DIR``.
QR's floor of 2 sqrt(V) rows per field caps it near 16x here.
"""

from configs import movielens
from configs.sweeps import SEEDS as SEEDS
from configs.sweeps import as_published, baseline_sweep

BUDGETS = [4.0, 8.0, 15.0]
SWEEP = baseline_sweep(BUDGETS)
# Stage B + swap-in (stage-A weights with each method's tables) only: on the shared 2-core machine
# the grid could not afford stage C for every cell. FINETUNE = True runs stage C as well.
FINETUNE = False


def get_config():
  return as_published(movielens.get_config())
