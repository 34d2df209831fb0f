"""Reader for libFM text with one feature per field in a fixed order (Frappe, iPinYou).

Each line is ``LABEL idx:val idx:val ...`` with exactly ``num_fields`` pairs; the field of a pair
is its position in the line, so the global index ``idx`` is the raw value of that field. The
``val`` part is ignored (it is 1 in every file this library reads: one-hot rows).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv


def read_libfm(
  path: str, field_names: list[str], max_rows: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """Parses a libFM file with one ``idx:val`` pair per field.

  Args:
    path: the file (``\\n`` or ``\\r\\n`` line ends).
    field_names: names of the fields, in the order their pairs appear on a line.
    max_rows: read at most this many rows (0 = all).

  Returns:
    ``(labels, indices)``: float64 ``[num_rows]`` as written, int64 ``[num_rows, num_fields]``.

  Raises:
    ValueError: empty file, a line with the wrong number of pairs, a non-numeric label or a
      non-integer index (naming the file, 1-based line and field).
  """
  if os.path.getsize(path) == 0:
    raise ValueError(f"{path}: file is empty (expected libFM lines 'LABEL idx:val ...')")
  try:
    labels, indices = _read_fast(path, len(field_names), max_rows)
  except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
    # Irregular spacing or a malformed line: the exact scan either parses it or names the line.
    labels, indices = _read_slow(path, field_names, max_rows)
  if len(labels) == 0:
    raise ValueError(f"{path}: no data rows")
  return labels, indices


def _read_fast(path: str, num_fields: int, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
  names = ["label"] + [f"f{i}" for i in range(num_fields)]
  table = pa_csv.read_csv(
    path,
    read_options=pa_csv.ReadOptions(column_names=names, block_size=1 << 22),
    parse_options=pa_csv.ParseOptions(delimiter=" "),
    convert_options=pa_csv.ConvertOptions(
      column_types={"label": pa.float64(), **{n: pa.string() for n in names[1:]}},
      strings_can_be_null=False,
    ),
  )
  if max_rows:
    table = table.slice(0, max_rows)
  labels = table.column("label").to_numpy()
  indices = np.empty((table.num_rows, num_fields), dtype=np.int64)
  for i, name in enumerate(names[1:]):
    head = pc.list_element(pc.split_pattern(table.column(name), ":", max_splits=1), 0)
    indices[:, i] = pc.cast(head, pa.int64()).to_numpy()
  return labels, indices


def _read_slow(path: str, field_names: list[str], max_rows: int) -> tuple[np.ndarray, np.ndarray]:
  labels, rows = [], []
  with open(path, encoding="utf-8", errors="replace") as fh:
    for lineno, line in enumerate(fh, start=1):
      parts = line.split()
      if not parts:
        continue
      if len(parts) != len(field_names) + 1:
        raise ValueError(
          f"{path}, line {lineno}: expected a label and {len(field_names)} idx:val pairs "
          f"(one per field: {', '.join(field_names)}), got {len(parts) - 1} pairs"
        )
      try:
        labels.append(float(parts[0]))
      except ValueError:
        raise ValueError(
          f"{path}, line {lineno}, column 'label': expected a number, got {parts[0]!r}"
        ) from None
      row = []
      for name, pair in zip(field_names, parts[1:], strict=True):
        index = pair.partition(":")[0]
        try:
          row.append(int(index))
        except ValueError:
          raise ValueError(
            f"{path}, line {lineno}, field {name!r}: expected 'idx:val' with an integer idx, "
            f"got {pair!r}"
          ) from None
      rows.append(row)
      if max_rows and len(rows) >= max_rows:
        break
  return np.asarray(labels, np.float64), np.asarray(rows, np.int64).reshape(-1, len(field_names))
