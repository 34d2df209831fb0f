"""Fast reading of big delimited text files (CSV/TSV) into pandas, with precise error messages.

The fast path is pyarrow's multi-threaded CSV reader with explicit column types: categorical
columns become dictionary-encoded strings (pandas ``category``: int32 codes plus one copy of each
distinct string), so a 10M-row file takes memory close to the encoded arrays. When pyarrow rejects
a file, a slow pure-Python scan finds the first bad line and column and says what was expected;
that scan only runs on the error path.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from mec_jax.data.raw import line_of_row

# Column kinds a reader asks for.
CATEGORY = "category"  # dictionary-encoded string; empty -> "" (its own value)
FLOAT = "float"  # float32 (half the memory of float64; ample for counts); empty -> NaN
INT = "int"  # int64; empty -> NaN (column becomes float64 in pandas)
LABEL = "label"  # float64, must be present on every row

_ARROW_TYPES = {
  CATEGORY: pa.dictionary(pa.int32(), pa.string()),
  FLOAT: pa.float32(),
  INT: pa.int64(),
  LABEL: pa.float64(),
}
_BLOCK_SIZE = 1 << 22  # 4 MiB blocks: measured faster than 16 MiB with 2 cores


def header_of(path: str, delimiter: str) -> list[str]:
  """The column names on the first line of ``path``; ValueError if the file is empty."""
  with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
    first = fh.readline()
  if not first.strip():
    raise ValueError(f"{path}: file is empty (expected a header line)")
  return [name.strip() for name in next(csv.reader([first], delimiter=delimiter))]


def read_delimited(
  path: str,
  kinds: Mapping[str, str],
  *,
  delimiter: str = ",",
  names: Sequence[str] | None = None,
  max_rows: int = 0,
) -> pd.DataFrame:
  """Reads the columns named in ``kinds`` from a delimited file.

  Args:
    path: the file.
    kinds: column name -> one of `CATEGORY`, `FLOAT`, `INT`, `LABEL`; only these are read.
    delimiter: field separator (``","`` or ``"\\t"``).
    names: column names of a file without a header line; ``None`` means line 1 is the header.
    max_rows: read at most this many data rows (0 = all).

  Returns:
    A DataFrame with the columns of ``kinds`` in that order.

  Raises:
    ValueError: file empty or without data rows, header lacking a requested column, a row with
      the wrong number of fields, or a value that does not parse as its kind (message names
      the file, 1-based line and column).
  """
  if os.path.getsize(path) == 0:
    raise ValueError(f"{path}: file is empty")
  header = names is None
  all_names = header_of(path, delimiter) if header else list(names)
  missing = [c for c in kinds if c not in all_names]
  if missing:
    raise ValueError(f"{path}: missing columns {missing}; the header has {all_names}")
  read_options = pa_csv.ReadOptions(
    column_names=None if header else all_names, block_size=_BLOCK_SIZE
  )
  parse_options = pa_csv.ParseOptions(delimiter=delimiter)
  convert_options = pa_csv.ConvertOptions(
    column_types={c: _ARROW_TYPES[k] for c, k in kinds.items()},
    include_columns=list(kinds),
    strings_can_be_null=False,
  )
  try:
    if max_rows:
      table = _read_head(path, read_options, parse_options, convert_options, max_rows)
    else:
      table = pa_csv.read_csv(
        path,
        read_options=read_options,
        parse_options=parse_options,
        convert_options=convert_options,
      )
  except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
    _diagnose(path, all_names, kinds, delimiter, header, max_rows)
    raise ValueError(f"{path}: could not parse ({err})") from err
  if table.num_rows == 0:
    raise ValueError(f"{path}: no data rows" + (" after the header" if header else ""))
  # self_destruct frees each Arrow column once converted, so the peak stays near one copy.
  table = table.unify_dictionaries()
  frame = table.to_pandas(split_blocks=True, self_destruct=True)
  del table
  label_cols = [c for c, k in kinds.items() if k == LABEL]
  for col in label_cols:
    if frame[col].isna().any():
      row = int(frame[col].isna().to_numpy().argmax())
      raise ValueError(
        f"{path}, line {line_of_row(path, row, header)}, column {col!r}: label is empty "
        "(expected a number)"
      )
  return frame


def _read_head(path, read_options, parse_options, convert_options, max_rows) -> pa.Table:
  """Streams blocks until ``max_rows`` rows are read, so a quick look never parses a whole file."""
  reader = pa_csv.open_csv(
    path, read_options=read_options, parse_options=parse_options, convert_options=convert_options
  )
  batches, rows = [], 0
  for batch in reader:
    batches.append(batch)
    rows += batch.num_rows
    if rows >= max_rows:
      break
  if not batches:
    return reader.schema.empty_table()
  return pa.Table.from_batches(batches).slice(0, max_rows)


def _diagnose(path, names, kinds, delimiter, header, max_rows) -> None:
  """Scans ``path`` line by line and raises a ValueError at the first malformed line."""
  numeric = {i: (c, kinds[c]) for i, c in enumerate(names) if kinds.get(c) in (FLOAT, INT, LABEL)}
  sep = {",": "comma", "\t": "tab"}.get(delimiter, repr(delimiter))
  data_rows = 0
  with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
    for lineno, row in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
      if header and lineno == 1:
        continue
      if not row:
        continue
      data_rows += 1
      if max_rows and data_rows > max_rows:
        return
      if len(row) != len(names):
        raise ValueError(
          f"{path}, line {lineno}: expected {len(names)} {sep}-separated fields "
          f"({', '.join(names[:3])}, ...), got {len(row)}"
        )
      for i, (col, kind) in numeric.items():
        value = row[i].strip()
        if value == "" and kind != LABEL:
          continue
        try:
          int(value) if kind == INT else float(value)
        except ValueError:
          expected = "an integer" if kind == INT else "a number"
          raise ValueError(
            f"{path}, line {lineno}, column {col!r}: expected {expected}, got {value!r}"
          ) from None
