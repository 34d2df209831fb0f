"""Hot kernels, each beside the plain ``jnp`` reference it is tested against (DESIGN §8).

Nothing here imports the rest of mec_jax.
"""

from mec_jax.ops.segment import (
  segment_sum,
  segment_sum_reference,
  segment_sum_sorted,
  take_rows,
  unique_with_inverse,
)

__all__ = [
  "segment_sum",
  "segment_sum_reference",
  "segment_sum_sorted",
  "take_rows",
  "unique_with_inverse",
]
