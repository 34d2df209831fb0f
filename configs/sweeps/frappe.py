"""Baselines at equal bytes on Frappe (compressed: user 957 ids, item 4,082).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/frappe.py --workdir=DIR``.
QR's floor of 2 sqrt(V) rows per field caps it near 26x: the 50x cells are infeasible for QR.
"""

from configs import frappe

SEEDS = [2024, 2025, 2026]
BUDGETS = [8.0, 16.0, 25.0, 50.0]
SWEEP = (
  [
    {"compress.method": method, "compress.target_ratio": ratio}
    for method in ("pq", "hash", "qr")
    for ratio in BUDGETS
  ]
  + [
    {  # the hashing trick as usually run: fresh tables and a fresh model (stage C cold)
      "compress.method": "hash",
      "compress.init_tables": "random",
      "finetune.init_from_pretrain": False,
    "finetune.codebook_learning_rate": 0.0,  # the fresh rows train at train.learning_rate
      "compress.target_ratio": ratio,
    }
    for ratio in BUDGETS
  ]
  + [{"compress.method": "int8"}, {"compress.method": "int4"}]
)


def get_config():
  return frappe.get_config()
