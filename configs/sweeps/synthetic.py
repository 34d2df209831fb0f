"""Baselines at equal bytes on the synthetic default (configs/synthetic.py, Criteo-shaped).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/synthetic.py --workdir=DIR``.
Compressed: the four fields with >= 1000 ids (~84k ids in all); QR's floor allows up to ~80x.
"""

from configs import synthetic
from configs.sweeps import SEEDS as SEEDS
from configs.sweeps import as_published, baseline_sweep

BUDGETS = [10.0, 25.0, 50.0]
SWEEP = baseline_sweep(BUDGETS)
# Stage B + swap-in (stage-A weights with each method's tables) only: on the shared 2-core machine
# the grid could not afford stage C for every cell. FINETUNE = True runs stage C as well.
FINETUNE = False


def get_config():
  return as_published(synthetic.get_config())
