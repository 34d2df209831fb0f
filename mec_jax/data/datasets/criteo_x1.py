"""Criteo_x1 (FuxiCTR / BARS benchmark split): ``train.csv``, ``valid.csv``, ``test.csv``.

Each CSV has a header ``label,I1,...,I13,C1,...,C26``: 13 integer count features (numeric here;
empty = missing) and 26 hashed categorical features (strings; empty is its own value). The split
is the official 7:2:1 one of the benchmark (45.8M rows in total). The files are streamed
(`mec_jax.data.streamed`): never held in memory.
"""

from __future__ import annotations

import os

from mec_jax.data.datasets.delimited import CATEGORY, FLOAT, LABEL
from mec_jax.data.raw import RawData, data_dir_of, max_rows_of, require_file
from mec_jax.data.streamed import DelimitedSource, read_raw

VERSION = 2
CONFIG_KEYS = ("dir", "max_rows")
NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
FILES = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
HINT = (
  "Download Criteo_x1 (https://github.com/reczoo/Datasets#criteo, the BARS Criteo_x1 zip) and "
  "unpack it so that <data.dir>/train.csv, valid.csv and test.csv exist."
)


def source(data_config) -> DelimitedSource:
  directory = data_dir_of(data_config, "criteo_x1", HINT)
  files = {s: require_file(os.path.join(directory, f), HINT) for s, f in FILES.items()}
  return DelimitedSource(
    "criteo_x1",
    files,
    {"label": LABEL} | {c: FLOAT for c in NUMERIC} | {c: CATEGORY for c in CATEGORICAL},
    NUMERIC + CATEGORICAL,
    numeric=NUMERIC,
    max_rows=max_rows_of(data_config),
  )


def read(data_config) -> RawData:
  return read_raw(source(data_config))
