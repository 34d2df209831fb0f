"""Criteo_x1 (FuxiCTR / BARS benchmark split): ``train.csv``, ``valid.csv``, ``test.csv``.

Each CSV has a header ``label,I1,...,I13,C1,...,C26``: 13 integer count features (numeric here;
empty = missing) and 26 hashed categorical features (strings; empty is its own value). The split
is the official 7:2:1 one of the benchmark (45.8M rows in total).
"""

from __future__ import annotations

import os

from mec_jax.data.datasets.delimited import CATEGORY, FLOAT, LABEL, read_delimited
from mec_jax.data.raw import RawData, binary_labels, data_dir_of, max_rows_of, require_file

VERSION = 1
CONFIG_KEYS = ("dir", "max_rows")
NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
FILES = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
HINT = (
  "Download Criteo_x1 (https://github.com/reczoo/Datasets#criteo, the BARS Criteo_x1 zip) and "
  "unpack it so that <data.dir>/train.csv, valid.csv and test.csv exist."
)


def read(data_config) -> RawData:
  directory = data_dir_of(data_config, "criteo_x1", HINT)
  kinds = {"label": LABEL} | {c: FLOAT for c in NUMERIC} | {c: CATEGORY for c in CATEGORICAL}
  splits = {}
  for split, filename in FILES.items():
    path = require_file(os.path.join(directory, filename), HINT)
    frame = read_delimited(path, kinds, max_rows=max_rows_of(data_config))
    frame["label"] = binary_labels(frame["label"].to_numpy(), path, "label", header=True)
    splits[split] = frame
  return RawData("criteo_x1", splits, NUMERIC + CATEGORICAL, numeric=NUMERIC)
