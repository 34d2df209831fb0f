"""Streamed encoding of big delimited files straight into a cache entry (Criteo_x1 scale).

A reader that declares a `DelimitedSource` is encoded without ever holding a file in memory:

  1. (random-split sources only) one pass counts the data lines, to draw the split;
  2. one parsing pass, chunk by chunk (`iter_delimited`): every categorical value gets a raw code
     from its field's `StreamVocabulary` (train rows counted), raw numbers and labels are checked;
     ids, numbers and labels are appended to ``<split>_*.npy`` files in the entry directory;
  3. per categorical field, the train-frequency ids replace the raw codes in place (memory-mapped,
     in row blocks); per numeric field, the train statistics are computed on the whole column and
     the values rewritten (`log_standardize`, or `bucketize` + `encode_categorical`).

The arrays, statistics and counts are the ones `mec_jax.data.encode.encode` computes from the same
rows in memory, so the files are byte-identical (tests/data/test_data_stream.py). Peak memory is
the vocabularies (~100 bytes per distinct value), a few chunks, and one numeric column of all
splits in float64 during step 3, on top of the memory-mapped arrays themselves.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from mec_jax.data import text_lines
from mec_jax.data.datasets.delimited import CATEGORY, INT, iter_delimited
from mec_jax.data.encode import EncodeOptions, bucketize, encode_categorical, log_standardize
from mec_jax.data.raw import RawData, binary_labels, random_split, split_indices
from mec_jax.data.schema import CATEGORICAL, NUMERIC, SPLITS, FeatureMap, FieldSpec
from mec_jax.data.vocabulary import StreamVocabulary
from mec_jax.errors import DataError

RANDOM = "all"  # key of `DelimitedSource.files` for one file split at random
_REMAP_ROWS = 1 << 20  # rows per block when rewriting ids in place


@dataclasses.dataclass(frozen=True)
class DelimitedSource:
  """What a delimited-file reader declares (instead of parsing in `read`).

  Attributes:
    dataset: dataset name.
    files: ``{split: path}`` for an official split, or ``{RANDOM: path}`` for one file whose rows
      are split at random by ``split_fractions`` / ``split_seed`` (as `random_split`).
    kinds: columns to read -> kind (`delimited.CATEGORY`, ``FLOAT``, ``INT``, ``LABEL``).
    fields: field names, in the column order of the encoded arrays.
    numeric: the numeric subset of ``fields``.
    label: the label column in the files (0/1).
    delimiter, names: as `iter_delimited` (``names=None``: line 1 is a header).
    derive: ``derive(columns, path, lines) -> columns`` adds derived fields to a chunk's columns
      (Arrow dictionary arrays for ``CATEGORY``, numpy for the others); ``None`` = identity.
    split_fractions, split_seed: the random split of a ``RANDOM`` file.
    max_rows: read at most this many rows per file (0 = all).
  """

  dataset: str
  files: Mapping[str, str]
  kinds: Mapping[str, str]
  fields: Sequence[str]
  numeric: Sequence[str] = ()
  label: str = "label"
  delimiter: str = ","
  names: Sequence[str] | None = None
  derive: Callable | None = None
  split_fractions: Sequence[float] = (0.8, 0.1, 0.1)
  split_seed: int = 0
  max_rows: int = 0

  def chunks(self, path: str) -> Iterator[tuple[dict, np.ndarray]]:
    """``(columns, label)`` per checked chunk: ``columns[field]`` ``[rows]``, label float32."""
    for chunk in iter_delimited(
      path, self.kinds, delimiter=self.delimiter, names=self.names, max_rows=self.max_rows
    ):
      columns = {c: _column(chunk.table.column(c), k) for c, k in self.kinds.items()}
      if self.derive is not None:
        columns = self.derive(columns, path, chunk.lines)
      label = binary_labels(columns.pop(self.label), path, self.label, lines=chunk.lines)
      yield {f: columns[f] for f in self.fields}, label


def _column(column: pa.ChunkedArray, kind: str):
  if kind == CATEGORY:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
  values = column.to_numpy()
  return values.astype(np.float64) if kind == INT and column.null_count else values


def read_raw(source: DelimitedSource) -> RawData:
  """The rows of ``source`` in memory (`RawData`), for the in-memory encoder."""
  frames = {}
  for split, path in source.files.items():
    pieces = []
    for columns, label in source.chunks(path):
      pieces.append(pa.table({**columns, "label": label}))
    table = pa.concat_tables(pieces).unify_dictionaries()
    frames[split] = table.to_pandas(split_blocks=True, self_destruct=True)
  if RANDOM in frames:
    frames = random_split(frames[RANDOM], source.split_fractions, int(source.split_seed))
  return RawData(source.dataset, frames, list(source.fields), numeric=list(source.numeric))


class _NpyAppender:
  """Writes a ``.npy`` file of unknown row count: header, rows appended, header rewritten.

  numpy pads the header so that a larger first dimension fits in place, so the result is
  byte-identical to ``np.save`` of the whole array.
  """

  def __init__(self, path: str, dtype, width: int | None):
    self.path, self.dtype, self.width, self.rows = path, np.dtype(dtype), width, 0
    self._fh = open(path, "wb")
    self._header()

  def _header(self) -> int:
    shape = (self.rows,) if self.width is None else (self.rows, self.width)
    np.lib.format.write_array_header_1_0(
      self._fh,
      {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape},
    )
    return self._fh.tell()

  def append(self, block: np.ndarray) -> None:
    self._fh.write(np.ascontiguousarray(block, self.dtype).tobytes())
    self.rows += len(block)

  def close(self) -> None:
    end = self._fh.tell()
    self._fh.seek(0)
    self._header()
    self._fh.seek(end)
    self._fh.close()


def encode_to(source: DelimitedSource, options: EncodeOptions, directory: str):
  """Encodes ``source`` into ``<split>_{ids,numeric,label}.npy`` files in ``directory``.

  Returns:
    ``(feature_map, stats)``, as `mec_jax.data.encode.encode`.

  Raises:
    DataError: a malformed file (naming file, line, column, value) or an empty train split.
  """
  fields, numeric = list(source.fields), set(source.numeric)
  log = options.numeric == "log"
  cat = [j for j, f in enumerate(fields) if f not in numeric]
  num = [j for j, f in enumerate(fields) if f in numeric]
  vocabs = {j: StreamVocabulary() for j in cat}
  raw_name = "numeric" if log else "raw_numeric"
  writers = {
    s: {
      "ids": _NpyAppender(os.path.join(directory, f"{s}_ids.npy"), np.int32, len(fields)),
      raw_name: _NpyAppender(os.path.join(directory, f"{s}_{raw_name}.npy"), np.float32, len(num)),
      "label": _NpyAppender(os.path.join(directory, f"{s}_label.npy"), np.float32, None),
    }
    for s in SPLITS
  }
  for split, path in source.files.items():
    assignment = _assignment(source, path) if split == RANDOM else None
    start = 0
    for columns, label in source.chunks(path):
      rows = len(label)
      ids = np.zeros((rows, len(fields)), np.int32)
      for j in cat:
        ids[:, j] = vocabs[j].codes(columns[fields[j]])
      numbers = np.zeros((rows, len(num)), np.float32)
      for k, j in enumerate(num):
        numbers[:, k] = columns[fields[j]]
      parts = {split: slice(None)}
      if assignment is not None:
        which = assignment[start : start + rows]
        parts = {s: which == i for i, s in enumerate(SPLITS)}
      start += rows
      for s, rows_of_s in parts.items():
        for name, block in (("ids", ids), (raw_name, numbers), ("label", label)):
          writers[s][name].append(block[rows_of_s])
        if s == "train":
          for j in cat:
            vocabs[j].count_train(ids[rows_of_s, j])
  for arrays in writers.values():
    for writer in arrays.values():
      writer.close()
  if writers["train"]["label"].rows == 0:
    raise DataError(
      f"{source.dataset}: the train split is empty; nothing to build a vocabulary from"
    )
  specs, stats = {}, {}
  mappings = {}
  for j in cat:
    mappings[j], counts = vocabs.pop(j).finish(options.min_count)
    specs[j] = FieldSpec(fields[j], CATEGORICAL, len(counts), len(counts) - 1, counts)
  _remap(directory, mappings)
  _encode_numeric(directory, fields, num, options, raw_name, specs, stats)
  feature_map = FeatureMap(source.dataset, [specs[j] for j in range(len(fields))])
  return feature_map, {f: stats[f] for f in fields if f in stats}


def _assignment(source: DelimitedSource, path: str) -> np.ndarray:
  """Split index (0 train, 1 valid, 2 test) of every row of a random-split file, in file order."""
  rows = text_lines.count_data_lines(path, skip_lines=int(source.names is None))
  if source.max_rows:
    rows = min(rows, source.max_rows)
  which = np.zeros(rows, np.int8)
  for i, idx in enumerate(
    split_indices(rows, source.split_fractions, int(source.split_seed)).values()
  ):
    which[idx] = i
  return which


def _open(directory: str, split: str, name: str, mode: str = "r+") -> np.ndarray:
  return np.load(os.path.join(directory, f"{split}_{name}.npy"), mmap_mode=mode)


def _remap(directory: str, mappings: dict[int, np.ndarray]) -> None:
  """Replaces raw codes by ids in place, ``_REMAP_ROWS`` rows at a time."""
  for split in SPLITS:
    ids = _open(directory, split, "ids")
    for start in range(0, len(ids), _REMAP_ROWS):
      block = ids[start : start + _REMAP_ROWS]
      for j, raw_to_id in mappings.items():
        block[:, j] = raw_to_id[block[:, j]]
    ids.flush()
    del ids


def _encode_numeric(directory, fields, num, options, raw_name, specs, stats) -> None:
  """Train statistics and final values (log) or bucket ids (bucketize) of the numeric fields."""
  for k, j in enumerate(num):
    raw = {s: _open(directory, s, raw_name) for s in SPLITS}
    columns = {s: pd.Series(np.array(raw[s][:, k])) for s in SPLITS}
    if options.numeric == "log":
      values, mean, std = log_standardize(columns)
      stats[fields[j]] = {"mode": "log", "mean": mean, "std": std}
      specs[j] = FieldSpec(fields[j], NUMERIC, 1, -1, np.array([len(columns["train"])]))
      for s in SPLITS:
        raw[s][:, k] = values[s]
    else:
      buckets, edges = bucketize(columns, options.num_buckets)
      stats[fields[j]] = {"mode": "bucketize", "edges": edges.tolist()}
      ids, counts = encode_categorical(buckets, options.min_count)
      specs[j] = FieldSpec(fields[j], CATEGORICAL, len(counts), len(counts) - 1, counts)
      for s in SPLITS:
        out = _open(directory, s, "ids")
        out[:, j] = ids[s]
        out.flush()
    del raw, columns
  if options.numeric != "log":
    for s in SPLITS:
      os.remove(os.path.join(directory, f"{s}_{raw_name}.npy"))
      rows = len(_open(directory, s, "label", "r"))
      np.save(os.path.join(directory, f"{s}_numeric.npy"), np.zeros((rows, 0), np.float32))
