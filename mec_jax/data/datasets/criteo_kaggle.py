"""Criteo Display Advertising Challenge (Kaggle 2014) raw ``train.txt``.

Tab-separated, no header, 40 columns: ``label, I1..I13, C1..C26``. I1..I13 are integer counts
(numeric here; may be empty or negative), C1..C26 32-bit hex hashes (categorical; empty is its
own value). There is no official split: rows are split at random by ``data.split_fractions``
with ``data.split_seed`` (a first pass counts the lines, the second streams the rows).

``data.dir`` is the directory holding ``train.txt`` or the path of the file itself (so the
2k-row sample ``criteo_sample_2k.txt`` reads directly).
"""

from __future__ import annotations

import os

from mec_jax.data.datasets.delimited import CATEGORY, FLOAT, LABEL
from mec_jax.data.raw import RawData, data_dir_of, max_rows_of, require_file
from mec_jax.data.streamed import RANDOM, DelimitedSource, read_raw

VERSION = 2
CONFIG_KEYS = ("dir", "max_rows", "split_fractions", "split_seed")
NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
COLUMNS = ["label", *NUMERIC, *CATEGORICAL]
HINT = (
  "Download the Criteo Display Advertising Challenge data (dac.tar.gz, from "
  "https://ailab.criteo.com/ressources/ or the Kaggle criteo-display-ad-challenge page) and "
  "unpack it so that <data.dir>/train.txt exists, or set data.dir to the file itself."
)


def source(data_config) -> DelimitedSource:
  location = data_dir_of(data_config, "criteo_kaggle", HINT)
  path = location if os.path.isfile(location) else os.path.join(location, "train.txt")
  return DelimitedSource(
    "criteo_kaggle",
    {RANDOM: require_file(path, HINT)},
    {"label": LABEL} | {c: FLOAT for c in NUMERIC} | {c: CATEGORY for c in CATEGORICAL},
    NUMERIC + CATEGORICAL,
    numeric=NUMERIC,
    delimiter="\t",
    names=COLUMNS,
    split_fractions=tuple(data_config.split_fractions),
    split_seed=int(data_config.split_seed),
    max_rows=max_rows_of(data_config),
  )


def read(data_config) -> RawData:
  return read_raw(source(data_config))
