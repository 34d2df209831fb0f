"""iPinYou RTB impressions in the libFM form of ``wnzhang/make-ipinyou-data`` / ``deep-ctr``.

Files in ``data.dir``: ``train.fm.txt``, ``test.fm.txt`` (``LABEL idx:1 x 16``, label 0/1 =
click, one feature per field in a fixed order) and, optionally, ``featindex.fm.txt``
(``field:value<TAB>index``) whose field prefixes, in order of first appearance, name the 16
fields. The test file is the official test split; valid is a seeded random slice of the train
file of share ``valid / (train + valid)`` of ``data.split_fractions`` (1/9 by default).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd

from mec_jax.data import text_lines
from mec_jax.data.datasets.libfm import read_libfm
from mec_jax.data.raw import (
  RawData,
  binary_labels,
  check_fractions,
  data_dir_of,
  max_rows_of,
  require_file,
  split_indices,
)
from mec_jax.errors import DataError

VERSION = 1
CONFIG_KEYS = ("dir", "max_rows", "split_fractions", "split_seed")
DEFAULT_FIELDS = [
  "weekday", "hour", "useragent", "IP", "region", "city", "adexchange", "domain", "slotid",
  "slotwidth", "slotheight", "slotvisibility", "slotformat", "creative", "advertiser", "slotprice",
]  # fmt: skip
HINT = (
  "Produce train.fm.txt / test.fm.txt / featindex.fm.txt with "
  "https://github.com/wnzhang/make-ipinyou-data (or take the sample in "
  "https://github.com/wnzhang/deep-ctr, data/) and put them in data.dir."
)


def field_names(path: str) -> list[str]:
  """Field names from ``featindex.fm.txt``: the ``field`` prefixes in order of first appearance."""
  names, chunk = [], None
  for chunk in text_lines.iter_chunks(path):
    for lineno, line in chunk.lines():
      key, sep, index = line.partition("\t")
      if not sep or ":" not in key or not index.strip().isdigit():
        column = "index" if sep and ":" in key else "field:value"
        raise DataError(
          f"{path}, line {lineno}, column {column!r}: expected 'field:value<TAB>index' with an "
          f"integer index, got {line!r}"
        )
      name = key.split(":", 1)[0]
      if name not in names:
        names.append(name)
  if not names:
    raise DataError(f"{path}: file is empty (expected 'field:value<TAB>index' lines)")
  text_lines.require_line_end(chunk, "index")
  return names


def read(data_config) -> RawData:
  directory = data_dir_of(data_config, "ipinyou", HINT)
  index_path = os.path.join(directory, "featindex.fm.txt")
  fields = field_names(index_path) if os.path.isfile(index_path) else DEFAULT_FIELDS
  max_rows = max_rows_of(data_config)
  frames = {}
  for name in ("train", "test"):
    path = require_file(os.path.join(directory, f"{name}.fm.txt"), HINT)
    labels, indices, _ = read_libfm(path, fields, max_rows, functools.partial(_check, path))
    frame = pd.DataFrame(indices, columns=fields)
    frame["label"] = labels.astype(np.float32)
    frames[name] = frame
  train_share, valid_share, _ = check_fractions(data_config.split_fractions)
  share = valid_share / (train_share + valid_share)
  parts = split_indices(
    len(frames["train"]), (1.0 - share, share, 0.0), int(data_config.split_seed)
  )
  train = frames["train"]
  splits = {
    "train": train.take(parts["train"]).reset_index(drop=True),
    "valid": train.take(parts["valid"]).reset_index(drop=True),
    "test": frames["test"],
  }
  return RawData("ipinyou", splits, fields)


def _check(path: str, labels: np.ndarray, lines: np.ndarray) -> None:
  binary_labels(labels, path, "label", lines=lines)
