"""Raw (not yet encoded) splits of a dataset: the common output of every reader.

A reader turns downloaded files into one pandas DataFrame per split plus the list of fields;
`mec_jax.data.encode` then builds the train-only vocabularies and the integer arrays. Keeping this
boundary in one small dataclass is what lets every dataset share the same encoding and cache.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mec_jax.data import text_lines
from mec_jax.data.schema import SPLITS
from mec_jax.errors import ConfigError, DataError


@dataclasses.dataclass
class RawData:
  """Raw splits of one dataset.

  Attributes:
    dataset: dataset name (goes into the `FeatureMap`).
    splits: ``{"train", "valid", "test"} -> DataFrame``; each frame holds every column in
      ``fields`` plus ``label``. Categorical columns may have any hashable dtype (strings, ints,
      pandas ``category``); missing values (NaN/None) form their own value.
    fields: field names in the column order of the encoded arrays.
    numeric: the subset of ``fields`` that are numeric (floats, NaN = missing); all others are
      categorical.
    label: name of the 0/1 label column.
  """

  dataset: str
  splits: dict[str, pd.DataFrame]
  fields: list[str]
  numeric: Sequence[str] = ()
  label: str = "label"

  def __post_init__(self):
    if sorted(self.splits) != sorted(SPLITS):
      raise ValueError(f"{self.dataset}: splits must be {SPLITS}, got {sorted(self.splits)}")
    unknown = sorted(set(self.numeric) - set(self.fields))
    if unknown:
      raise ValueError(f"{self.dataset}: numeric fields {unknown} are not in fields {self.fields}")
    for split, frame in self.splits.items():
      missing = [c for c in [*self.fields, self.label] if c not in frame.columns]
      if missing:
        raise ValueError(f"{self.dataset}: {split} split lacks columns {missing}")

  @property
  def categorical(self) -> list[str]:
    return [f for f in self.fields if f not in set(self.numeric)]


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
  """Validates ``(train, valid, test)`` fractions: three non-negative numbers summing to 1."""
  fractions = tuple(float(f) for f in fractions)
  if (
    len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
  ):
    raise ConfigError(
      f"data.split_fractions must be three non-negative numbers (train, valid, test) summing to 1, "
      f"got {fractions}"
    )
  if fractions[0] == 0:
    raise ConfigError(f"data.split_fractions: the train fraction must be > 0, got {fractions}")
  return fractions


def split_indices(num_rows: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
  """Seeded random partition of ``range(num_rows)`` into train/valid/test.

  Rows are drawn by one permutation, then each split's indices are sorted so that a split keeps
  the file order (the training loader shuffles anyway; sorted reads are cache friendly).

  Returns:
    ``{split: int64 [rows_in_split]}``; sizes are ``round(cumsum(fractions) * num_rows)`` cuts.
  """
  fractions = check_fractions(fractions)
  perm = np.random.default_rng(seed).permutation(num_rows)
  cuts = np.round(np.cumsum(fractions) * num_rows).astype(np.int64)
  cuts[-1] = num_rows
  parts = np.split(perm, cuts[:-1])
  return {name: np.sort(part) for name, part in zip(SPLITS, parts, strict=True)}


def random_split(
  frame: pd.DataFrame, fractions: Sequence[float], seed: int
) -> dict[str, pd.DataFrame]:
  """`split_indices` applied to the rows of ``frame`` (index reset in each split)."""
  return {
    name: frame.take(idx).reset_index(drop=True)
    for name, idx in split_indices(len(frame), fractions, seed).items()
  }


def require_file(path: str, hint: str) -> str:
  """Returns ``path`` if it is an existing non-empty text file (`text_lines.check_plain_text`:
  not compressed, no CR-only line ends); otherwise a `DataError` naming it, with ``hint``."""
  if not os.path.isfile(path):
    where = os.path.dirname(path) or "."
    state = "directory does not exist" if not os.path.isdir(where) else "file not found"
    raise DataError(f"{path}: {state}. {hint}")
  if os.path.getsize(path) == 0:
    raise DataError(f"{path}: file is empty. {hint}")
  text_lines.check_plain_text(path)
  return path


def line_of_row(path: str, row: int, header: bool) -> int:
  """1-based line number of data row ``row`` (0-based) of a text file, skipping blank lines.

  Readers skip blank lines, so ``row + 1 + header`` can be off; this scan (only run to build an
  error message) gives the line a text editor shows.
  """
  seen = -1
  with open(path, encoding="utf-8", errors="replace") as fh:
    for lineno, line in enumerate(fh, start=1):
      if (header and lineno == 1) or not line.strip():
        continue
      seen += 1
      if seen == row:
        return lineno
  return row + 1 + header


def binary_labels(
  values: np.ndarray,
  path: str,
  column: str,
  header: bool = False,
  *,
  lines: np.ndarray | None = None,
  allowed: tuple[float, ...] = (0.0, 1.0),
) -> np.ndarray:
  """Checks that ``values`` are all in ``allowed`` and returns them as float32.

  Args:
    values: float ``[num_rows]`` label column as parsed (NaN = empty).
    path: file the labels came from, for the error message.
    column: label column name.
    header: whether line 1 of ``path`` is a header (used only when ``lines`` is None).
    lines: int ``[num_rows]`` 1-based line number of each row, when the reader knows them.
    allowed: the label values accepted (Frappe writes -1/1).

  Raises:
    DataError: naming the file, line, column and the first bad value.
  """
  values = np.asarray(values, dtype=np.float64)
  bad = ~np.isin(values, allowed)
  if bad.any():
    row = int(np.argmax(bad))
    line = lines[row] if lines is not None else line_of_row(path, row, header)
    expected = " or ".join(f"{a:g}" for a in allowed)
    raise DataError(
      f"{path}, line {line}, column {column!r}: label must be {expected}, got {values[row]}"
    )
  return values.astype(np.float32)


def max_rows_of(data_config) -> int:
  """``data.max_rows`` as a non-negative int (0 = read everything)."""
  max_rows = int(data_config.get("max_rows", 0) or 0)
  if max_rows < 0:
    raise ConfigError(f"data.max_rows must be >= 0 (0 = all rows), got {max_rows}")
  return max_rows


def data_dir_of(data_config, dataset: str, hint: str) -> str:
  """``data.dir`` as given, or a ValueError with a download hint when it is empty or absent."""
  directory = str(data_config.get("dir", "") or "")
  if not directory:
    raise DataError(f"{dataset}: data.dir is empty. {hint}")
  if not os.path.exists(directory):
    raise DataError(f"{directory}: directory does not exist (data.dir of {dataset}). {hint}")
  return directory
