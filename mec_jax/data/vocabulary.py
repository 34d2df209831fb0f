"""`StreamVocabulary`: one categorical field's vocabulary, built one chunk at a time.

A chunk gives each distinct value of the chunk (an Arrow dictionary or the uniques of a numpy
column); a dict maps each value to a *raw code* in order of first appearance, so the per-row work is
one numpy gather and the Python work is proportional to the chunk's distinct values. Train rows add
to the raw counts; `finish` then orders the ids exactly as the in-memory encoder does
(`mec_jax.data.encode.frequency_ids`: train frequency, ties by natural value order, rare -> OOV).
Memory: ~100 bytes per distinct value (a Python str and a dict slot).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa

from mec_jax.data.encode import frequency_ids, value_rank


class StreamVocabulary:
  """Raw codes and train counts of one categorical field."""

  def __init__(self):
    self._codes: dict = {}  # value -> raw code; insertion order = code order
    self._train_counts = np.zeros(0, np.int64)

  def __len__(self) -> int:
    return len(self._codes)

  def codes(self, column) -> np.ndarray:
    """Raw codes int32 ``[rows]`` of a chunk's column (new values get new codes).

    Args:
      column: a ``pa.DictionaryArray`` without nulls, or a numpy array of hashable values.
    """
    if isinstance(column, pa.DictionaryArray):
      if column.null_count:
        raise ValueError("StreamVocabulary: a categorical column has nulls (expected none)")
      local = column.indices.to_numpy(zero_copy_only=False)
      distinct = column.dictionary.to_pylist()
    else:
      local, uniques = pd.factorize(np.asarray(column), use_na_sentinel=False)
      distinct = uniques.tolist()
    table = self._codes
    # map(dict.get) runs in C: ~20x faster than a Python loop over the distinct values.
    lookup = np.fromiter(map(table.get, distinct, itertools.repeat(-1)), np.int32, len(distinct))
    new = np.flatnonzero(lookup < 0)
    if len(new):
      first = len(table)
      keys = map(distinct.__getitem__, new.tolist())
      table.update(zip(keys, range(first, first + len(new)), strict=True))
      lookup[new] = np.arange(first, first + len(new), dtype=np.int32)
    return lookup[local]

  def count_train(self, codes: np.ndarray) -> None:
    """Adds the raw codes of train rows to the counts."""
    counts = np.bincount(codes, minlength=len(self._codes))
    counts[: len(self._train_counts)] += self._train_counts
    self._train_counts = counts.astype(np.int64)

  def finish(self, min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(raw_to_id, counts)``: int32 ``[num_raw]`` id of each raw code; int64 ``[V]`` train
    occurrences per id (the OOV id ``V - 1`` counts the rare train values folded into it)."""
    uniques = pd.Index(list(self._codes))
    raw_counts = np.zeros(len(uniques), np.int64)
    raw_counts[: len(self._train_counts)] = self._train_counts
    raw_to_id = frequency_ids(raw_counts, value_rank(uniques)[:-1], min_count)[:-1]
    vocab_size = int((raw_counts >= max(min_count, 1)).sum()) + 1  # kept values + OOV
    counts = np.zeros(vocab_size, np.int64)
    np.add.at(counts, raw_to_id, raw_counts)
    return raw_to_id, counts
