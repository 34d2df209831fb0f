"""Stage A's regularizer on the synthetic default: ``train.embedding_l2`` (each touched row once).

Stage A is shared by every cell of a `mec_jax.experiments` grid (overrides reach stages B and C
only), so this grid of stage-A overrides runs with ``python bench/stage_a_sweep.py
--sweep=configs/sweeps/stage_a_synthetic.py --workdir=DIR`` (stage A per cell and seed; the
value is chosen on validation AUC). Grid: decades around where ``λ · row`` meets the data
gradient of a row seen once in a batch of 4096 (~1e-5 per coordinate), from 0 (today) to 1e-2;
then the rare ids folded into the OOV row (``data.min_count``), the diagnosis of the tail.
"""

from configs import synthetic

SEEDS = [2024]  # one seed first; bench/stage_a_sweep.py --seeds=2024,2025,2026 for the chosen value
SWEEP = [{"train.embedding_l2": value} for value in (0.0, 1e-3, 1e-4, 1e-2)] + [
  # The tail's share (bench/synthetic_tail.py): ids seen < min_count times in train share the OOV
  # row, as rare ids share a hashed bucket.
  {"data.min_count": count}
  for count in (4, 2)
]


def get_config():
  return synthetic.get_config()
