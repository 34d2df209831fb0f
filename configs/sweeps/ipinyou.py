"""Baselines at equal bytes on the iPinYou sample (fields with >= 1000 ids).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/ipinyou.py --workdir=DIR``.
"""

from configs import ipinyou

SEEDS = [2024, 2025, 2026]
BUDGETS = [4.0, 8.0, 16.0]
SWEEP = [
  {"compress.method": method, "compress.target_ratio": ratio}
  for method in ("pq", "hash", "qr")
  for ratio in BUDGETS
] + [{"compress.method": "int8"}, {"compress.method": "int4"}]


def get_config():
  return ipinyou.get_config()
