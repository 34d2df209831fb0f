"""Baselines at equal bytes on the synthetic default (configs/synthetic.py, Criteo-shaped).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/synthetic.py --workdir=DIR``.
Compressed: the four fields with >= 1000 ids (~84k ids in all); QR's floor allows up to ~80x.
"""

from configs import synthetic

SEEDS = [2024, 2025, 2026]
BUDGETS = [10.0, 25.0, 50.0]
SWEEP = [
  {"compress.method": method, "compress.target_ratio": ratio}
  for method in ("pq", "hash", "qr")
  for ratio in BUDGETS
] + [{"compress.method": "int8"}, {"compress.method": "int4"}]


def get_config():
  return synthetic.get_config()
