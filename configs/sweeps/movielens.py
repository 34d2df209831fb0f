"""Baselines at equal bytes on MovieLens-100K (compressed: user_id, item_id, zip3).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/movielens.py --workdir=DIR``.
QR's floor of 2 sqrt(V) rows per field caps it near 16x here.
"""

from configs import movielens

SEEDS = [2024, 2025, 2026]
BUDGETS = [4.0, 8.0, 15.0]
SWEEP = [
  {"compress.method": method, "compress.target_ratio": ratio}
  for ratio in BUDGETS  # budgets outermost: a partial grid compares methods at equal bytes
  for method in ("pq", "hash", "qr")
] + [{"compress.method": "int8"}, {"compress.method": "int4"}]
# Stage B + swap-in (stage-A weights with each method's tables) only: on the shared 2-core machine
# the grid could not afford stage C for every cell. FINETUNE = True runs stage C as well.
FINETUNE = False


def get_config():
  return movielens.get_config()
