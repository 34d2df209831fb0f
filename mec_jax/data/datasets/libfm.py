"""Strict reader for libFM text with one feature per field in a fixed order (Frappe, iPinYou).

Each line is ``LABEL idx:val idx:val ...`` with exactly ``num_fields`` pairs; the field of a pair
is its position in the line, so the global index ``idx`` is the raw value of that field. ``val`` is
1 in every file this library reads (one-hot rows); it is checked (a finite number) but not used.

The file is read in chunks of whole lines (`mec_jax.data.text_lines`). A chunk is parsed by
pyarrow (single spaces) and checked column by column; a chunk that fails any check (irregular
spacing, a malformed token) is re-read by an exact Python scan, which either parses it or raises a
`DataError` naming the file, line, field and token. So a last line cut inside a pair (``51`` or
``51:``) is refused, as is a file that ends inside its last line.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from mec_jax.data import text_lines
from mec_jax.errors import DataError


class _Irregular(Exception):
  """The fast path cannot vouch for a chunk; the exact scan decides."""


def read_libfm(
  path: str,
  field_names: list[str],
  max_rows: int = 0,
  check_labels: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Parses a libFM file with one ``idx:val`` pair per field.

  Args:
    path: the file (``\\n`` or ``\\r\\n`` line ends).
    field_names: names of the fields, in the order their pairs appear on a line.
    max_rows: read at most this many rows (0 = all).
    check_labels: ``check_labels(labels, lines)`` raises on labels the dataset does not allow;
      run per chunk, so a bad label is named before a cut last line is.

  Returns:
    ``(labels, indices, lines)``: float64 ``[rows]`` as written, int64 ``[rows, num_fields]``,
    int64 ``[rows]`` 1-based line number of each row.

  Raises:
    DataError: empty file, a line with the wrong number of pairs, a label that is not a finite
      number, a pair that is not ``idx:val`` with an integer ``idx >= 0`` and a finite ``val``, or
      a file ending inside its last line (naming the file, 1-based line, field and token).
  """
  if os.path.getsize(path) == 0:
    raise DataError(f"{path}: file is empty (expected libFM lines 'LABEL idx:val ...')")
  labels, indices, lines, rows, chunk = [], [], [], 0, None
  for chunk in text_lines.iter_chunks(path):
    numbers = chunk.data_lines()
    if not len(numbers):
      continue
    try:
      label, index = _read_fast(chunk, len(field_names), len(numbers))
    except (_Irregular, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
      label, index = _read_slow(chunk, field_names)
    if check_labels is not None:
      check_labels(label, numbers)
    if max_rows and rows + len(numbers) >= max_rows:
      keep = max_rows - rows
      labels.append(label[:keep]), indices.append(index[:keep]), lines.append(numbers[:keep])
      chunk = None
      break
    labels.append(label), indices.append(index), lines.append(numbers)
    rows += len(numbers)
  if not labels:
    raise DataError(f"{path}: no data rows")
  if chunk is not None:
    text_lines.require_line_end(chunk, field_names[-1])
  return np.concatenate(labels), np.concatenate(indices), np.concatenate(lines)


def _read_fast(chunk, num_fields: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
  names = ["label"] + [f"f{i}" for i in range(num_fields)]
  table = pa_csv.read_csv(
    pa.BufferReader(chunk.data),
    read_options=pa_csv.ReadOptions(column_names=names, block_size=1 << 22),
    parse_options=pa_csv.ParseOptions(delimiter=" ", quote_char=False),
    convert_options=pa_csv.ConvertOptions(
      column_types={"label": pa.float64(), **{n: pa.string() for n in names[1:]}},
      strings_can_be_null=False,
      null_values=[],
    ),
  )
  labels = table.column("label").to_numpy()
  if table.num_rows != rows or not np.isfinite(labels).all():
    raise _Irregular
  indices = np.empty((rows, num_fields), dtype=np.int64)
  for i, name in enumerate(names[1:]):
    parts = pc.split_pattern(table.column(name), ":", max_splits=1)
    if pc.min(pc.list_value_length(parts)).as_py() != 2:
      raise _Irregular
    values = pc.cast(pc.list_element(parts, 1), pa.float64()).to_numpy()
    index = pc.cast(pc.list_element(parts, 0), pa.int64()).to_numpy()
    if not np.isfinite(values).all() or index.min() < 0:
      raise _Irregular
    indices[:, i] = index
  return labels, indices


def _read_slow(chunk, field_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
  labels, rows = [], []
  for lineno, line in chunk.lines():
    parts = line.split()
    if len(parts) != len(field_names) + 1:
      names = ["label", *field_names]
      last = names[max(len(parts), 1) - 1] if len(parts) <= len(names) else f"#{len(parts)}"
      raise DataError(
        f"{chunk.path}, line {lineno}: expected a label and {len(field_names)} idx:val pairs "
        f"(one per field: {', '.join(field_names)}), got {len(parts) - 1} pairs; the line ends "
        f"in field {last!r} with {(parts or [line])[-1][-24:]!r}"
      )
    label = text_lines.finite_number(parts[0])
    if label is None:
      raise DataError(
        f"{chunk.path}, line {lineno}, column 'label': expected a number, got {parts[0]!r}"
      )
    labels.append(label)
    row = []
    for name, pair in zip(field_names, parts[1:], strict=True):
      index, sep, value = pair.partition(":")
      if not (
        sep and index.isdigit() and index.isascii() and text_lines.finite_number(value) is not None
      ):
        raise DataError(
          f"{chunk.path}, line {lineno}, field {name!r}: expected 'idx:val' with an integer "
          f"idx >= 0 and a number val, got {pair!r}"
        )
      row.append(int(index))
    rows.append(row)
  return np.asarray(labels, np.float64), np.asarray(rows, np.int64).reshape(-1, len(field_names))
