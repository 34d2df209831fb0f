"""Strict, streamed reading of big delimited text files (CSV/TSV) into Arrow tables.

A file is read in chunks of whole lines (`mec_jax.data.text_lines`); pyarrow's multi-threaded CSV
parser converts each chunk with explicit column types, so memory stays at a few chunks whatever the
file size. Categorical columns come back dictionary-encoded (int32 indices plus the chunk's distinct
strings). Parsing is strict: a row with the wrong number of fields, a number that does not parse or
is not finite (``nan``, ``inf``), an empty label, a stray carriage return or a file that ends inside
its last line is a `DataError` naming the file, 1-based line, column and value. Only an empty cell
is missing (no ``NA``/``null`` spellings). When pyarrow rejects a chunk, a pure-Python scan of that
chunk alone finds the line and says what was expected.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from mec_jax.data import text_lines
from mec_jax.errors import DataError

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
_BLOCK_SIZE = (
  1 << 22
)  # pyarrow's parallel parse unit inside a chunk; 4 MiB measured best on 2 cores


@dataclasses.dataclass
class ParsedChunk:
  """One chunk of a delimited file, parsed and checked.

  Attributes:
    table: the requested columns, ``[rows]`` each; a categorical column is one DictionaryArray.
    lines: int64 ``[rows]`` 1-based line number of each row.
    text: the chunk's raw lines (to quote a line in an error message).
  """

  table: pa.Table
  lines: np.ndarray
  text: text_lines.TextChunk


def header_of(path: str, delimiter: str) -> list[str]:
  """The column names on the first line of ``path``; DataError if the file is empty."""
  text_lines.check_plain_text(path)
  with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
    first = fh.readline()
  if not first.strip():
    raise DataError(f"{path}: file is empty (expected a header line)")
  return [name.strip() for name in next(csv.reader([first], delimiter=delimiter))]


def iter_delimited(
  path: str,
  kinds: Mapping[str, str],
  *,
  delimiter: str = ",",
  names: Sequence[str] | None = None,
  max_rows: int = 0,
  chunk_bytes: int | None = None,
) -> Iterator[ParsedChunk]:
  """Parses the columns named in ``kinds`` chunk by chunk (memory: a few chunks).

  Args:
    path: the file.
    kinds: column name -> one of `CATEGORY`, `FLOAT`, `INT`, `LABEL`; only these are converted.
    delimiter: field separator (``","`` or ``"\\t"``).
    names: column names of a file without a header line; ``None`` means line 1 is the header.
    max_rows: stop after this many data rows (0 = all).
    chunk_bytes: bytes per chunk (default `text_lines.CHUNK_BYTES`).

  Yields:
    `ParsedChunk` s in file order. After the last one, a file that ends inside its last line
    raises (so the caller's own checks of that line come first).

  Raises:
    DataError: file empty or without data rows, header lacking a requested column, a malformed
      row (naming the file, 1-based line, column and value).
  """
  if os.path.getsize(path) == 0:
    raise DataError(f"{path}: file is empty")
  header = names is None
  all_names = header_of(path, delimiter) if header else list(names)
  missing = [c for c in kinds if c not in all_names]
  if missing:
    raise DataError(f"{path}: missing columns {missing}; the header has {all_names}")
  options = _options(all_names, kinds, delimiter)
  rows, chunk = 0, None
  chunk_bytes = chunk_bytes or text_lines.CHUNK_BYTES
  for chunk in text_lines.iter_chunks(path, chunk_bytes, skip_lines=int(header)):
    lines = chunk.data_lines()
    if not len(lines):
      continue
    table = _parse(chunk, lines, all_names, kinds, delimiter, options)
    if max_rows and rows + len(lines) >= max_rows:
      keep = max_rows - rows
      yield ParsedChunk(table.slice(0, keep), lines[:keep], chunk)
      return
    rows += len(lines)
    yield ParsedChunk(table, lines, chunk)
  if rows == 0:
    raise DataError(f"{path}: no data rows" + (" after the header" if header else ""))
  text_lines.require_line_end(chunk, all_names[-1])


def read_delimited(
  path: str,
  kinds: Mapping[str, str],
  *,
  delimiter: str = ",",
  names: Sequence[str] | None = None,
  max_rows: int = 0,
) -> pd.DataFrame:
  """All rows of `iter_delimited` as one DataFrame (categorical columns as pandas ``category``).

  For files that fit in memory (side tables, samples); big files go through `iter_delimited`.
  """
  tables = [
    c.table
    for c in iter_delimited(path, kinds, delimiter=delimiter, names=names, max_rows=max_rows)
  ]
  table = pa.concat_tables(tables).unify_dictionaries()
  del tables
  # self_destruct frees each Arrow column once converted, so the peak stays near one copy.
  return table.to_pandas(split_blocks=True, self_destruct=True)


def _options(names, kinds, delimiter):
  return (
    pa_csv.ReadOptions(column_names=names, block_size=_BLOCK_SIZE),
    pa_csv.ParseOptions(delimiter=delimiter),
    pa_csv.ConvertOptions(
      column_types={c: _ARROW_TYPES[k] for c, k in kinds.items()},
      include_columns=list(kinds),
      strings_can_be_null=False,
      null_values=[""],
      quoted_strings_can_be_null=False,
    ),
  )


def _parse(chunk, lines, names, kinds, delimiter, options) -> pa.Table:
  read_options, parse_options, convert_options = options
  try:
    table = pa_csv.read_csv(
      pa.BufferReader(chunk.data),
      read_options=read_options,
      parse_options=parse_options,
      convert_options=convert_options,
    )
  except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
    _diagnose(chunk, names, kinds, delimiter)
    raise DataError(f"{chunk.path}, lines {lines[0]}-{lines[-1]}: could not parse ({err})") from err
  if table.num_rows != len(lines):
    _diagnose(chunk, names, kinds, delimiter)
    raise DataError(
      f"{chunk.path}, lines {lines[0]}-{lines[-1]}: {table.num_rows} rows parsed from "
      f"{len(lines)} lines (quoted line breaks are not supported)"
    )
  for col, kind in kinds.items():
    if kind == CATEGORY:
      continue
    column = table.column(col)
    valid = column.is_valid().to_numpy()  # empty cells are null; the text "nan" is not
    if kind == LABEL and not valid.all():
      row = int(np.argmin(valid))
      raise DataError(
        f"{chunk.path}, line {lines[row]}, column {col!r}: label is empty (expected a number)"
      )
    if kind != INT:  # an int64 column cannot hold nan/inf: pyarrow refused them already
      bad = valid & ~np.isfinite(column.to_numpy())
      if bad.any():
        _raise_bad_value(chunk, lines[int(np.argmax(bad))], names, col, delimiter)
  columns = {
    c: table.column(c).combine_chunks() if kinds[c] == CATEGORY else table.column(c) for c in kinds
  }
  return pa.table(columns)


def _raise_bad_value(chunk, lineno, names, col, delimiter) -> None:
  row = next(csv.reader([chunk.line_text(lineno)], delimiter=delimiter))
  value = row[names.index(col)]
  raise DataError(
    f"{chunk.path}, line {lineno}, column {col!r}: expected a finite number, got {value!r}"
  )


def _diagnose(chunk, names, kinds, delimiter) -> None:
  """Scans the chunk's lines and raises a DataError at the first malformed one."""
  numeric = {i: (c, kinds[c]) for i, c in enumerate(names) if kinds.get(c) in (FLOAT, INT, LABEL)}
  sep = {",": "comma", "\t": "tab"}.get(delimiter, repr(delimiter))
  for lineno, text in chunk.lines():
    row = next(csv.reader([text], delimiter=delimiter))
    if len(row) != len(names):
      last = names[len(row) - 1] if len(row) <= len(names) else f"#{len(row)}"
      raise DataError(
        f"{chunk.path}, line {lineno}: expected {len(names)} {sep}-separated fields "
        f"({', '.join(names[:3])}, ...), got {len(row)}; the line ends in column {last!r} with "
        f"{row[-1][-24:]!r}"
      )
    for i, (col, kind) in numeric.items():
      value = row[i].strip()
      if value == "":
        if kind == LABEL:
          raise DataError(
            f"{chunk.path}, line {lineno}, column {col!r}: label is empty (expected a number)"
          )
        continue
      number = text_lines.finite_number(value)
      if number is None or (kind == INT and not value.lstrip("+-").isdigit()):
        expected = "an integer" if kind == INT else "a number"
        raise DataError(
          f"{chunk.path}, line {lineno}, column {col!r}: expected {expected}, got {value!r}"
        )
