"""Avazu CTR (Kaggle 2014) raw ``train`` CSV: ``id,click,hour,C1,banner_pos,...,C21``.

24 columns with a header. ``id`` is dropped; ``hour`` (YYMMDDHH) becomes two fields,
``hour_of_day`` and ``weekday``; the other 21 columns are categorical (read as strings). Label
``click``. No official split: rows are split at random by ``data.split_fractions`` with
``data.split_seed`` (a first pass counts the lines, the second streams the rows). This is the format of ``shared/data/avazu_sample/avazu_sample.csv``; the
BARS benchmark split of the same data is ``avazu_x1``.

``data.dir`` is the directory holding ``train.csv`` (or ``train``) or the path of the file itself.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from mec_jax.data.datasets.delimited import CATEGORY, INT, LABEL
from mec_jax.data.raw import RawData, data_dir_of, max_rows_of, require_file
from mec_jax.data.streamed import RANDOM, DelimitedSource, read_raw
from mec_jax.errors import DataError

VERSION = 2
CONFIG_KEYS = ("dir", "max_rows", "split_fractions", "split_seed")
CATEGORICAL = [
  "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
  "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
  "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
]  # fmt: skip
FIELDS = ["hour_of_day", "weekday", *CATEGORICAL]
HINT = (
  "Download the Avazu CTR data (Kaggle avazu-ctr-prediction, train.gz), gunzip it and set "
  "data.dir to the file, or to a directory holding it as train.csv."
)


def source(data_config) -> DelimitedSource:
  location = data_dir_of(data_config, "avazu_kaggle", HINT)
  path = location
  if os.path.isdir(location):
    candidates = [os.path.join(location, n) for n in ("train.csv", "train")]
    path = next((p for p in candidates if os.path.isfile(p)), candidates[0])
  return DelimitedSource(
    "avazu_kaggle",
    {RANDOM: require_file(path, HINT)},
    {"click": LABEL, "hour": INT} | {c: CATEGORY for c in CATEGORICAL},
    FIELDS,
    label="click",
    derive=_split_hour,
    split_fractions=tuple(data_config.split_fractions),
    split_seed=int(data_config.split_seed),
    max_rows=max_rows_of(data_config),
  )


def read(data_config) -> RawData:
  return read_raw(source(data_config))


def _split_hour(columns: dict, path: str, lines: np.ndarray) -> dict:
  """``hour`` (YYMMDDHH) -> ``hour_of_day`` and ``weekday``."""
  hour = np.asarray(columns.pop("hour"), dtype=np.float64)
  if np.isnan(hour).any():
    line = lines[int(np.argmax(np.isnan(hour)))]
    raise DataError(f"{path}, line {line}, column 'hour': empty (expected YYMMDDHH)")
  hour = hour.astype(np.int64)
  columns["hour_of_day"] = hour % 100
  columns["weekday"] = _weekday(hour // 100, path, lines)
  return columns


def _weekday(yymmdd: np.ndarray, path: str, lines: np.ndarray) -> np.ndarray:
  """Day of week (0 = Monday) of each YYMMDD date; few distinct dates, so convert the uniques."""
  uniques, inverse = np.unique(yymmdd, return_inverse=True)
  dates = pd.to_datetime(
    pd.Series(uniques + 20_000_000).astype(str), format="%Y%m%d", errors="coerce"
  )
  if dates.isna().any():
    bad = uniques[dates.isna().to_numpy()][0]
    line = lines[int(np.argmax(yymmdd == bad))]
    raise DataError(f"{path}, line {line}, column 'hour': {bad:06d}xx is not a YYMMDDHH date")
  return dates.dt.day_of_week.to_numpy().astype(np.int64)[inverse]
