"""`FieldValues`: the ``values [rows, num_fields]`` of a split, stored only for numeric fields.

In the batch format (`mec_jax.data.schema`) ``values[:, f]`` is 1.0 for a categorical field and the
normalized number for a numeric one. Storing the 1.0s densely costs 4 bytes per categorical cell
(~5 GB on Criteo_x1's 26 categorical fields), so a split keeps ``numeric`` float32
``[rows, num_numeric]`` and this view rebuilds dense rows on indexing: ``values[rows]`` is a
float32 ``[len(rows), num_fields]`` array, which is what the loader gathers per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class FieldValues:
  """Dense-looking ``[rows, num_fields]`` float32 values over numeric columns only.

  Args:
    numeric: float32 ``[rows, len(columns)]`` (numpy or memory-mapped), the numeric fields' values.
    columns: field index of each column of ``numeric``, increasing.
    num_fields: total number of fields F.
  """

  dtype = np.dtype(np.float32)
  ndim = 2

  def __init__(self, numeric: np.ndarray, columns: Sequence[int], num_fields: int):
    self.numeric = numeric
    self.columns = np.asarray(columns, dtype=np.int64)
    self.num_fields = int(num_fields)
    if numeric.ndim != 2 or numeric.shape[1] != len(self.columns):
      raise ValueError(
        f"FieldValues: numeric has shape {numeric.shape}, expected [rows, {len(self.columns)}]"
      )
    if len(self.columns) and (
      self.columns.min() < 0
      or self.columns.max() >= num_fields
      or np.any(np.diff(self.columns) <= 0)
    ):
      raise ValueError(
        f"FieldValues: columns {self.columns.tolist()} must increase inside [0, {num_fields})"
      )

  @property
  def shape(self) -> tuple[int, int]:
    return (len(self.numeric), self.num_fields)

  @property
  def nbytes(self) -> int:
    """Bytes actually stored (the numeric columns only)."""
    return int(self.numeric.nbytes)

  def __len__(self) -> int:
    return len(self.numeric)

  def __getitem__(self, key) -> np.ndarray:
    """``values[rows]`` or ``values[rows, fields]`` as a dense float32 array (a copy)."""
    rows, fields = (key, slice(None)) if not isinstance(key, tuple) else (key + (slice(None),))[:2]
    if isinstance(key, tuple) and len(key) > 2:
      raise IndexError(f"FieldValues: too many indices {key!r} for a 2-d array")
    if isinstance(rows, np.ndarray) and rows.dtype.kind in "iu" and rows.ndim == 1:
      numeric = np.asarray(np.take(self.numeric, rows, axis=0), np.float32)  # 4x a fancy index
    else:
      numeric = np.asarray(self.numeric[rows], dtype=np.float32)
    dense = np.ones(numeric.shape[:-1] + (self.num_fields,), np.float32)
    dense[..., self.columns] = numeric
    return dense[..., fields]

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    """All rows dense (``rows * num_fields * 4`` bytes: only for small splits)."""
    dense = self[:]
    return dense if dtype is None else dense.astype(dtype)

  def __repr__(self) -> str:
    return f"FieldValues(shape={self.shape}, numeric columns {self.columns.tolist()})"
