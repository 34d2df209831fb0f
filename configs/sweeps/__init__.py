"""Sweep files for `mec_jax.experiments` (one per grid), and what they share."""

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
