"""Frappe (context-aware app usage; the NFM/AFM/AFN libFM release).

Files in ``data.dir``: ``frappe.train.libfm`` (optional), ``frappe.validation.libfm`` and
``frappe.test.libfm``. Each line is ``LABEL idx:1 x 10`` with one feature per field, always in
the order of `FIELDS`; LABEL is 1 (app used) or -1 (sampled negative) and becomes 1 / 0. The
raw value of a field is its global libFM index.

The published 7:2:1 split needs the train part, which is often missing (it is over 4 MiB), so
all rows present (train file first when it exists, then validation, then test) are pooled and
re-split at random by ``data.split_fractions`` (default 80/10/10) with ``data.split_seed``.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd

from mec_jax.data.datasets.libfm import read_libfm
from mec_jax.data.raw import (
  RawData,
  data_dir_of,
  max_rows_of,
  random_split,
  require_file,
)
from mec_jax.errors import DataError

VERSION = 1
CONFIG_KEYS = ("dir", "max_rows", "split_fractions", "split_seed")
FIELDS = [
  "user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country",
  "city",
]  # fmt: skip
OPTIONAL_FILES = ("frappe.train.libfm",)
REQUIRED_FILES = ("frappe.validation.libfm", "frappe.test.libfm")
HINT = (
  "Download Frappe in libFM format (frappe.train.libfm, frappe.validation.libfm, "
  "frappe.test.libfm from https://github.com/hexiangnan/neural_factorization_machine, "
  "data/frappe/) and put the files in data.dir."
)


def read(data_config) -> RawData:
  directory = data_dir_of(data_config, "frappe", HINT)
  max_rows = max_rows_of(data_config)
  paths = [os.path.join(directory, f) for f in OPTIONAL_FILES]
  paths = [p for p in paths if os.path.isfile(p)]
  paths += [require_file(os.path.join(directory, f), HINT) for f in REQUIRED_FILES]
  frames = []
  for path in paths:
    labels, indices, _ = read_libfm(path, FIELDS, max_rows, functools.partial(_check, path))
    frame = pd.DataFrame(indices, columns=FIELDS)
    frame["label"] = (labels > 0).astype(np.float32)
    frames.append(frame)
  frame = pd.concat(frames, ignore_index=True)
  splits = random_split(frame, data_config.split_fractions, int(data_config.split_seed))
  return RawData("frappe", splits, FIELDS)


def _check(path: str, labels: np.ndarray, lines: np.ndarray) -> None:
  bad = ~np.isin(labels, (-1.0, 0.0, 1.0))
  if bad.any():
    row = int(np.argmax(bad))
    raise DataError(
      f"{path}, line {lines[row]}, column 'label': expected 1 or -1, got {labels[row]:g}"
    )
