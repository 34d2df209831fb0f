"""Baselines at equal bytes on the iPinYou sample (fields with >= 1000 ids).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/ipinyou.py --workdir=DIR``.
"""

from configs import ipinyou
from configs.sweeps import SEEDS as SEEDS
from configs.sweeps import as_published, baseline_sweep

BUDGETS = [4.0, 8.0, 16.0]
SWEEP = baseline_sweep(BUDGETS)
# Stage B + swap-in (stage-A weights with each method's tables) only: on the shared 2-core machine
# the grid could not afford stage C for every cell. FINETUNE = True runs stage C as well.
FINETUNE = False


def get_config():
  return as_published(ipinyou.get_config())
