"""Baselines at equal bytes on the synthetic default (configs/synthetic.py, Criteo-shaped).

Run: ``python -m mec_jax.experiments --config=configs/sweeps/synthetic.py --workdir=DIR``.
Compressed: the four fields with >= 1000 ids (~84k ids in all); QR's floor allows up to ~80x.
"""

from configs import synthetic

SEEDS = [2024, 2025, 2026]
BUDGETS = [10.0, 25.0, 50.0]
SWEEP = [
  {"compress.method": method, "compress.target_ratio": ratio}
  for ratio in BUDGETS  # budgets outermost: a partial grid compares methods at equal bytes
  for method in ("pq", "hash", "qr")
] + [{"compress.method": "int8"}, {"compress.method": "int4"}]
# Stage B + swap-in (stage-A weights with each method's tables) only: on the shared 2-core machine
# the grid could not afford stage C for every cell. FINETUNE = True runs stage C as well.
FINETUNE = False


def get_config():
  return synthetic.get_config()
