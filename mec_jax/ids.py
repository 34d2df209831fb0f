"""The host (numpy) half of the id policy of `mec_jax.layers.base`, shared with the export.

Imports numpy and `mec_jax.errors` only, so a serving process (`mec_jax.export.load`) maps ids
exactly as the layers do without importing flax or the layers.
"""

from __future__ import annotations

import numpy as np

from mec_jax.errors import DataError


def check_integer_ids(dtype, where: str = "ids") -> None:
  """Raises `DataError` unless ``dtype`` is an integer dtype (bool and floats are refused: a
  float id 1.7 would silently read row 1).

  Args:
    dtype: numpy or JAX dtype of the ids (known at trace time, so this works under jit).
    where: what the ids are, for the message (``"Embed"``, ``"served ids"``).
  """
  if not np.issubdtype(np.dtype(dtype), np.integer):
    raise DataError(
      f"{where}: ids must have an integer dtype, got {np.dtype(dtype)}; non-integer ids are "
      "refused rather than truncated to a row"
    )


def host_ids(ids, vocab_size, oov_id, where: str = "ids") -> np.ndarray:
  """int32 ids ready for a table, mapped in numpy in the ids' own width before the cast.

  Ids outside ``[0, vocab_size)`` (negative, past the vocabulary, or too wide for int32, e.g.
  an int64 ``>= 2**32`` that a plain int32 cast would wrap onto a real row) become ``oov_id``.

  Args:
    ids: int ``[...]`` host ids (numpy array, list or Python int; any integer width).
    vocab_size: rows of the table; an int or an array broadcasting against ``ids`` (e.g.
      ``[num_fields]`` for ``[batch, num_fields]`` ids).
    oov_id: row that out-of-range ids read; same broadcasting as ``vocab_size``.
    where: what the ids are, for the message.

  Returns:
    numpy int32 ``[...]`` in ``[0, vocab_size)``.

  Raises:
    DataError: non-integer ids.
  """
  ids = np.asarray(ids)
  check_integer_ids(ids.dtype, where)
  vocab_size, oov_id = np.asarray(vocab_size), np.asarray(oov_id)
  if ids.dtype == np.uint64:  # numpy refuses to compare uint64 with signed arrays
    ids = np.minimum(ids, np.uint64(2**63 - 1)).astype(np.int64)
  return np.where((ids < 0) | (ids >= vocab_size), oov_id, ids).astype(np.int32)
