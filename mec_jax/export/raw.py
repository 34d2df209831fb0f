"""Raw feature values -> the ``ids``/``values`` an export's program takes: numpy only.

The spec comes from `mec_jax.data.preprocess.build` (written into the export's manifest, with its
arrays in ``vocab.npz``). Per field, in the dataset's raw layout (a column per field name):

  * ``mode="vocabulary"`` (categorical): a value kept in training reads its id; any other value
    reads the OOV id ``vocab_size - 1``. A missing value (None/NaN) reads ``missing_id``, or for
    readers that spell a blank as a string (Criteo/Avazu CSV: ``""``) is that string. Values are
    compared in the vocabulary's type: strings as ``str(v)``, integer vocabularies as ``int(v)``
    (so ``"1234"`` and ``1234`` are the same libFM index). Value 1.0.
  * ``mode="log"`` (numeric): ``x`` parsed as a number (blank/None/NaN = missing), rounded to
    the reader's float width, ``t = log1p(max(x, 0))``, missing -> 0, ``(t - mean) / std``; id 0.
  * ``mode="bucketize"``: the bucket of ``x`` among the train edges (missing -> bucket -1), then
    the vocabulary over buckets as above.
"""

from __future__ import annotations

import numpy as np


def _missing(column: np.ndarray) -> np.ndarray:
  """bool ``[rows]``: None, NaN or pandas' NA (an object column is scanned in Python)."""
  if column.dtype.kind == "f":
    return np.isnan(column)
  if column.dtype.kind != "O":
    return np.zeros(len(column), bool)
  flags = (v is None or type(v).__name__ == "NAType" or v != v for v in column)
  return np.fromiter(flags, bool, len(column))


def _numbers(name: str, column: np.ndarray, dtype: str) -> np.ndarray:
  """float64 ``[rows]``, NaN where missing (blank strings too), rounded through ``dtype``."""
  if column.dtype.kind in "US":  # numpy parses the strings itself: no Python loop
    blank = np.char.strip(column.astype(str)) == ""
    out = np.full(len(column), np.nan)
    try:
      out[~blank] = column[~blank].astype(np.float64)
    except ValueError as err:
      raise ValueError(f"column {name!r}: expected numbers or blanks ({err})") from None
  elif column.dtype.kind == "O":
    blank = _missing(column) | np.fromiter(
      (isinstance(v, str) and not v.strip() for v in column), bool, len(column)
    )
    out = np.full(len(column), np.nan)
    try:
      out[~blank] = column[~blank].astype(np.float64)
    except (TypeError, ValueError) as err:
      raise ValueError(f"column {name!r}: expected numbers or blanks ({err})") from None
  else:
    out = np.asarray(column, np.float64)
  return out.astype(dtype).astype(np.float64)


class Vocabulary:
  """One field's raw value -> id map (sorted keys, binary search)."""

  def __init__(self, entry: dict, keys: np.ndarray, ids: np.ndarray):
    order = np.argsort(keys, kind="stable")
    self.keys, self.ids = keys[order], ids[order]
    self.oov_id = int(entry["oov_id"])
    self.missing_id = int(entry["missing_id"])
    self.missing_key = entry.get("missing_key")

  def lookup(self, name: str, column: np.ndarray) -> np.ndarray:
    """int32 ``[rows]`` ids of the raw values of ``column``."""
    missing = _missing(column)
    if self.missing_key is not None and missing.any():
      column = np.where(missing, self.missing_key, column.astype(object))
      missing = np.zeros(len(column), bool)
    present = column[~missing]
    try:
      if self.keys.dtype.kind == "U":
        if present.dtype.kind != "U":
          present = np.asarray([str(v) for v in present], dtype=str)
      elif present.dtype.kind == "O" or present.dtype.kind in "US":
        present = present.astype(object).astype(self.keys.dtype)
      else:
        present = present.astype(self.keys.dtype)
    except (TypeError, ValueError, OverflowError) as err:
      raise ValueError(
        f"column {name!r}: values must be {self.keys.dtype} like the training data ({err})"
      ) from None
    out = np.full(len(column), self.missing_id, np.int32)
    if len(self.keys) and len(present):
      pos = np.minimum(np.searchsorted(self.keys, present), len(self.keys) - 1)
      out[~missing] = np.where(self.keys[pos] == present, self.ids[pos], self.oov_id)
    elif len(present):
      out[~missing] = self.oov_id
    return out


class RawEncoder:
  """Raw columns -> ``(ids [rows, F] int32, values [rows, F] float32)`` for an export."""

  def __init__(self, spec: dict, arrays: dict[str, np.ndarray]):
    self.spec = spec
    self.names = [f["name"] for f in spec["fields"]]
    self._vocabs = {
      f["name"]: Vocabulary(f, arrays[f["keys"]], arrays[f["ids"]])
      for f in spec["fields"]
      if "keys" in f
    }

  def __call__(self, rows) -> tuple[np.ndarray, np.ndarray]:
    """Encodes ``rows``: a dict of columns or a pandas DataFrame, one column per field name.

    Raises:
      ValueError: a missing column (named), columns of different lengths, or values that do not
        parse (a numeric field's non-number, named with its column).
    """
    absent = [name for name in self.names if name not in rows]
    if absent:
      raise ValueError(f"predict_raw: no column {absent[0]!r} (needs {self.names})")
    columns = [np.asarray(rows[name]) for name in self.names]
    columns = [c.reshape(1) if c.ndim == 0 else c for c in columns]
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
      raise ValueError(f"predict_raw: columns have different lengths {sorted(lengths)}")
    num_rows = lengths.pop()
    ids = np.zeros((num_rows, len(self.names)), np.int32)
    values = np.ones((num_rows, len(self.names)), np.float32)
    for j, (entry, column) in enumerate(zip(self.spec["fields"], columns, strict=True)):
      name = entry["name"]
      if entry["mode"] == "vocabulary":
        ids[:, j] = self._vocabs[name].lookup(name, column)
        continue
      x = _numbers(name, column, entry["number_dtype"])
      if entry["mode"] == "log":
        t = np.log1p(np.maximum(x, 0.0))
        t = np.where(np.isnan(t), 0.0, t)
        values[:, j] = ((t - entry["mean"]) / entry["std"]).astype(np.float32)
      else:
        buckets = np.searchsorted(np.asarray(entry["edges"], np.float64), x, side="right")
        buckets[np.isnan(x)] = -1
        ids[:, j] = self._vocabs[name].lookup(name, buckets.astype(np.int64))
    return ids, values
