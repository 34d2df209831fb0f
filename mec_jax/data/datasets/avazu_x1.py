"""Avazu_x1 (FuxiCTR / BARS benchmark split): ``train.csv``, ``valid.csv``, ``test.csv``.

Each CSV has a header ``label,feat_1,...,feat_22``; all 22 fields are categorical (read as
strings). The split is the official 7:2:1 one of the benchmark (40.4M rows in total). The files
are streamed (`mec_jax.data.streamed`).
"""

from __future__ import annotations

import os

from mec_jax.data.datasets.delimited import CATEGORY, LABEL
from mec_jax.data.raw import RawData, data_dir_of, max_rows_of, require_file
from mec_jax.data.streamed import DelimitedSource, read_raw

VERSION = 2
CONFIG_KEYS = ("dir", "max_rows")
FIELDS = [f"feat_{i}" for i in range(1, 23)]
FILES = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
HINT = (
  "Download Avazu_x1 (https://github.com/reczoo/Datasets#avazu, the BARS Avazu_x1 zip) and "
  "unpack it so that <data.dir>/train.csv, valid.csv and test.csv exist."
)


def source(data_config) -> DelimitedSource:
  directory = data_dir_of(data_config, "avazu_x1", HINT)
  files = {s: require_file(os.path.join(directory, f), HINT) for s, f in FILES.items()}
  kinds = {"label": LABEL} | {c: CATEGORY for c in FIELDS}
  return DelimitedSource("avazu_x1", files, kinds, FIELDS, max_rows=max_rows_of(data_config))


def read(data_config) -> RawData:
  return read_raw(source(data_config))
