"""Avazu_x1 (FuxiCTR / BARS benchmark split): ``train.csv``, ``valid.csv``, ``test.csv``.

Each CSV has a header ``label,feat_1,...,feat_22``; all 22 fields are categorical (read as
strings). The split is the official 7:2:1 one of the benchmark (40.4M rows in total).
"""

from __future__ import annotations

import os

from mec_jax.data.datasets.delimited import CATEGORY, LABEL, read_delimited
from mec_jax.data.raw import RawData, binary_labels, data_dir_of, max_rows_of, require_file

VERSION = 1
CONFIG_KEYS = ("dir", "max_rows")
FIELDS = [f"feat_{i}" for i in range(1, 23)]
FILES = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
HINT = (
  "Download Avazu_x1 (https://github.com/reczoo/Datasets#avazu, the BARS Avazu_x1 zip) and "
  "unpack it so that <data.dir>/train.csv, valid.csv and test.csv exist."
)


def read(data_config) -> RawData:
  directory = data_dir_of(data_config, "avazu_x1", HINT)
  kinds = {"label": LABEL} | {c: CATEGORY for c in FIELDS}
  splits = {}
  for split, filename in FILES.items():
    path = require_file(os.path.join(directory, filename), HINT)
    frame = read_delimited(path, kinds, max_rows=max_rows_of(data_config))
    frame["label"] = binary_labels(frame["label"].to_numpy(), path, "label", header=True)
    splits[split] = frame
  return RawData("avazu_x1", splits, FIELDS)
