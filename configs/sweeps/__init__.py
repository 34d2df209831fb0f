"""Sweep files for `mec_jax.experiments` (one per grid), and what they share."""

from mec_jax.methods.protocols import FROM_SCRATCH  # the one definition (compress.auto shares it)

SEEDS = [2024, 2025, 2026]  # the seeds of every published grid


def baseline_sweep(budgets: list[float]) -> list[dict]:
  """PQ, hash and QR at each byte budget, then int8 and int4 (fixed ratios).

  Budgets are outermost, so a partly finished grid compares methods at equal bytes.
  """
  return [
    {"compress.method": method, "compress.target_ratio": ratio}
    for ratio in budgets
    for method in ("pq", "hash", "qr")
  ] + [{"compress.method": "int8"}, {"compress.method": "int4"}]


def as_published(config):
  """``config`` with the stage-B epoch rule the published grids ran with (bench/RESULTS.md,
  "Baselines at equal bytes"): their cells predate `quantize.selection` and shipped the
  lowest-error epoch, so resuming one keeps every PQ cell of its table on that rule."""
  config.quantize.selection = "error"
  return config


# The leaderboard (docs/leaderboard.md, bench/leaderboard.py): every registered method, warm-started
# and from scratch. The one list of methods is the registry; FIXED_RATIO methods have no budget.
FIXED_RATIO = ("int8", "int4")


def leaderboard_sweep(budgets: list[float], methods: tuple[str, ...] | None = None) -> list[dict]:
  """Each method (default: every `compress.method` of the registry) warm-started and from scratch,
  at each budget (budgets outermost); the fixed-ratio methods once, after the budgets."""
  from mec_jax.methods import registry

  methods = registry.names() if methods is None else methods
  budgeted = [m for m in methods if m not in FIXED_RATIO]
  fixed = [m for m in methods if m in FIXED_RATIO]
  cells = [{"compress.method": m, "compress.target_ratio": r} for r in budgets for m in budgeted]
  cells += [{"compress.method": m} for m in fixed]
  return [c | extra for c in cells for extra in ({}, FROM_SCRATCH)]
