"""Baselines at equal bytes on Frappe (compressed: user 957 ids, item 4,082).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/frappe.py --workdir=DIR``.
QR's floor of 2 sqrt(V) rows per field caps it near 26x: the 50x cells are infeasible for QR.
"""

from configs import frappe
from configs.sweeps import SEEDS as SEEDS
from configs.sweeps import as_published, baseline_sweep

BUDGETS = [8.0, 16.0, 25.0, 50.0]
SWEEP = baseline_sweep(BUDGETS)
# Stage B + swap-in (stage-A weights with each method's tables) only: on the shared 2-core machine
# the grid could not afford stage C for every cell. FINETUNE = True runs stage C as well.
FINETUNE = False


def get_config():
  return as_published(frappe.get_config())
