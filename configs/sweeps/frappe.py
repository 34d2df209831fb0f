"""Baselines at equal bytes on Frappe (compressed: user 957 ids, item 4,082).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/frappe.py --workdir=DIR``.
QR's floor of 2 sqrt(V) rows per field caps it near 26x: the 50x cells are infeasible for QR.
"""

from configs import frappe

SEEDS = [2024, 2025, 2026]
BUDGETS = [8.0, 16.0, 25.0, 50.0]
SWEEP = [
  {"compress.method": method, "compress.target_ratio": ratio}
  for ratio in BUDGETS  # budgets outermost: a partial grid compares methods at equal bytes
  for method in ("pq", "hash", "qr")
] + [{"compress.method": "int8"}, {"compress.method": "int4"}]
# Stage B + swap-in (stage-A weights with each method's tables) only: on the shared 2-core machine
# the grid could not afford stage C for every cell. FINETUNE = True runs stage C as well.
FINETUNE = False


def get_config():
  config = frappe.get_config()
  # The grid's first cells were run before `quantize.selection` existed, i.e. with this rule; the
  # rest use it too, so every PQ cell of the table ships the lowest-error epoch.
  config.quantize.selection = "error"
  return config
