"""Avazu CTR (Kaggle 2014) raw ``train`` CSV: ``id,click,hour,C1,banner_pos,...,C21``.

24 columns with a header. ``id`` is dropped; ``hour`` (YYMMDDHH) becomes two fields,
``hour_of_day`` and ``weekday``; the other 21 columns are categorical (read as strings). Label
``click``. No official split: rows are split at random by ``data.split_fractions`` with
``data.split_seed``. This is the format of ``shared/data/avazu_sample/avazu_sample.csv``; the
BARS benchmark split of the same data is ``avazu_x1``.

``data.dir`` is the directory holding ``train.csv`` (or ``train``) or the path of the file itself.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from mec_jax.data.datasets.delimited import CATEGORY, INT, LABEL, read_delimited
from mec_jax.data.raw import (
  RawData,
  binary_labels,
  data_dir_of,
  line_of_row,
  max_rows_of,
  random_split,
  require_file,
)

VERSION = 1
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


def read(data_config) -> RawData:
  location = data_dir_of(data_config, "avazu_kaggle", HINT)
  path = location
  if os.path.isdir(location):
    candidates = [os.path.join(location, n) for n in ("train.csv", "train")]
    path = next((p for p in candidates if os.path.isfile(p)), candidates[0])
  require_file(path, HINT)
  kinds = {"click": LABEL, "hour": INT} | {c: CATEGORY for c in CATEGORICAL}
  frame = read_delimited(path, kinds, max_rows=max_rows_of(data_config))
  hour = frame.pop("hour").to_numpy(dtype=np.float64)
  if np.isnan(hour).any():
    row = int(np.argmax(np.isnan(hour)))
    raise ValueError(
      f"{path}, line {line_of_row(path, row, True)}, column 'hour': empty (expected YYMMDDHH)"
    )
  hour = hour.astype(np.int64)
  frame["hour_of_day"] = hour % 100
  frame["weekday"] = _weekday(hour // 100, path)
  frame["label"] = binary_labels(frame.pop("click").to_numpy(), path, "click", header=True)
  splits = random_split(frame, data_config.split_fractions, int(data_config.split_seed))
  return RawData("avazu_kaggle", splits, FIELDS)


def _weekday(yymmdd: np.ndarray, path: str) -> np.ndarray:
  """Day of week (0 = Monday) of each YYMMDD date; few distinct dates, so convert the uniques."""
  uniques, inverse = np.unique(yymmdd, return_inverse=True)
  dates = pd.to_datetime(
    pd.Series(uniques + 20_000_000).astype(str), format="%Y%m%d", errors="coerce"
  )
  if dates.isna().any():
    bad = uniques[dates.isna().to_numpy()][0]
    raise ValueError(f"{path}, column 'hour': {bad:06d}xx is not a YYMMDDHH date")
  return dates.dt.day_of_week.to_numpy()[inverse]
