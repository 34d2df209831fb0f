"""KuaiRand (Pure / 1K / 27K): short-video impressions, label ``is_click``.

Layout (DESIGN §6): ``<data.dir>/data/`` holds the standard logs
``log_standard_4_08_to_4_21_<v>.csv`` and ``log_standard_4_22_to_5_08_<v>.csv`` (27K: several
``..._<v>_part<k>.csv`` each), ``user_features_<v>.csv`` and ``video_features_basic_<v>.csv``,
``<v>`` in ``pure``, ``1k``, ``27k`` (``data.variant``; empty = the one variant found).
``data.dir`` may also point at ``data/`` itself. The random-exposure log is not read.

Both standard logs are concatenated and left-joined with the user table on ``user_id`` and the
video table on ``video_id`` (a log row whose user or video is absent gets missing side features,
a value of their own). Only what is known before the impression becomes a feature:

  * context: ``user_id, video_id, hour`` (``hourmin // 100``), ``weekday`` (of ``date``), ``tab``;
  * user side: activity flags, the ``*_range`` columns and ``onehot_feat0..17``;
  * video side: ``author_id, video_type, upload_type, visible_status, music_id, music_type``,
    ``first_tag`` (first id of the comma list ``tag``) and ``duration_bucket``
    (``floor(log2(1 + video_duration / 1000 s))``, a fixed, data-independent bucketing).

Feedback columns (``play_time_ms``, ``is_like``, ``long_view``, ...) are never features: they
leak the label. Split by time: ``date <= data.train_end`` train, ``<= data.valid_end`` valid,
the rest test. `write_tiny_kuairand` writes a small directory in this layout for tests.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pandas as pd

from mec_jax.data.datasets.delimited import CATEGORY, FLOAT, INT, LABEL, read_delimited
from mec_jax.data.datasets.kuairand_fixture import write_tiny_kuairand
from mec_jax.data.raw import RawData, binary_labels, line_of_row, max_rows_of, require_file
from mec_jax.errors import ConfigError, DataError

VERSION = 1
CONFIG_KEYS = ("dir", "variant", "max_rows", "train_end", "valid_end")
VARIANTS = ("pure", "1k", "27k")
PERIODS = ("4_08_to_4_21", "4_22_to_5_08")
USER_FIELDS = [
  "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
  "follow_user_num_range", "fans_user_num_range", "friend_user_num_range", "register_days_range",
  *[f"onehot_feat{i}" for i in range(18)],
]  # fmt: skip
VIDEO_COLUMNS = [
  "author_id", "video_type", "upload_type", "visible_status", "music_id", "music_type", "tag"
]  # fmt: skip
VIDEO_FIELDS = [*VIDEO_COLUMNS[:-1], "first_tag", "duration_bucket"]
FIELDS = ["user_id", "video_id", "hour", "weekday", "tab", *USER_FIELDS, *VIDEO_FIELDS]
__all__ = ["FIELDS", "read", "write_tiny_kuairand"]


def _hint(variant: str) -> str:
  name = {"pure": "Pure", "1k": "1K", "27k": "27K"}.get(variant, "<Pure|1K|27K>")
  variant = variant if variant in VARIANTS else "<variant>"
  return (
    f"Download KuaiRand-{name} from https://kuairand.com and unpack it so that "
    f"<data.dir>/data/log_standard_4_08_to_4_21_{variant}.csv exists."
  )


def read(data_config) -> RawData:
  directory = str(data_config.get("dir", "") or "")
  if not directory or not os.path.isdir(directory):
    state = "data.dir is empty" if not directory else f"{directory}: directory does not exist"
    raise DataError(f"kuairand: {state}. {_hint(_variant_name(data_config))}")
  data_dir = os.path.join(directory, "data")
  data_dir = data_dir if os.path.isdir(data_dir) else directory
  variant = _variant(data_config, data_dir)
  hint = _hint(variant)
  max_rows = max_rows_of(data_config)
  logs = [_read_log(path, max_rows) for path in _log_files(data_dir, variant, hint)]
  log = pd.concat(logs, ignore_index=True)
  users = _read_side(_files(data_dir, f"user_features_{variant}", hint), "user_id", USER_FIELDS)
  videos = _read_side(
    _files(data_dir, f"video_features_basic_{variant}", hint),
    "video_id",
    VIDEO_COLUMNS,
    extra={"video_duration": FLOAT},
  )
  frame = pd.DataFrame({"user_id": log["user_id"], "video_id": log["video_id"]})
  frame["hour"] = log["hourmin"] // 100
  frame["weekday"] = _weekday(log["date"].to_numpy())
  frame["tab"] = log["tab"]
  user_rows = _join_index(users["user_id"], log["user_id"])
  for col in USER_FIELDS:
    frame[col] = _take(users[col], user_rows)
  video_rows = _join_index(videos["video_id"], log["video_id"])
  for col in VIDEO_COLUMNS[:-1]:
    frame[col] = _take(videos[col], video_rows)
  frame["first_tag"] = _take(_first_tag(videos["tag"]), video_rows)
  seconds = _take(videos["video_duration"], video_rows).to_numpy(dtype=np.float64) / 1000.0
  frame["duration_bucket"] = np.floor(np.log2(1.0 + np.maximum(seconds, 0.0)))
  frame["label"] = log["is_click"].to_numpy()
  date = log["date"].to_numpy()
  train_end, valid_end = int(data_config.train_end), int(data_config.valid_end)
  if valid_end < train_end:
    raise ConfigError(f"data.valid_end ({valid_end}) must be >= data.train_end ({train_end})")
  masks = {
    "train": date <= train_end,
    "valid": (date > train_end) & (date <= valid_end),
    "test": date > valid_end,
  }
  splits = {s: frame[m].reset_index(drop=True) for s, m in masks.items()}
  return RawData("kuairand", splits, FIELDS)


def _variant_name(data_config) -> str:
  return str(data_config.get("variant", "") or "").lower().removeprefix("kuairand-")


def _variant(data_config, data_dir: str) -> str:
  variant = _variant_name(data_config)
  if variant:
    if variant not in VARIANTS:
      raise ConfigError(f"kuairand: data.variant must be one of {VARIANTS}, got {variant!r}")
    return variant
  found = [v for v in VARIANTS if glob.glob(os.path.join(data_dir, f"log_standard_*_{v}*.csv"))]
  if len(found) != 1:
    what = f"several variants {found}" if found else "no log_standard_*.csv file"
    raise ConfigError(
      f"kuairand: data.variant is empty and {data_dir} has {what}; set data.variant to one of "
      f"{VARIANTS}. {_hint('pure')}"
    )
  return found[0]


def _files(data_dir: str, name: str, hint: str) -> list[str]:
  """``<name>.csv``, or its ``<name>_part<k>.csv`` pieces (the 27K release splits big files)."""
  stem = os.path.join(data_dir, name)
  found = sorted(glob.glob(f"{stem}.csv") + glob.glob(f"{stem}_part*.csv"))
  if not found:
    raise DataError(f"{stem}.csv: file not found (nor {stem}_part*.csv). {hint}")
  return [require_file(p, hint) for p in found]


def _log_files(data_dir: str, variant: str, hint: str) -> list[str]:
  return [
    p for period in PERIODS for p in _files(data_dir, f"log_standard_{period}_{variant}", hint)
  ]


def _read_log(path: str, max_rows: int) -> pd.DataFrame:
  kinds = {"user_id": INT, "video_id": INT, "date": INT, "hourmin": INT, "is_click": LABEL}
  log = read_delimited(path, kinds | {"tab": INT}, max_rows=max_rows)
  for col in ("user_id", "video_id", "date", "hourmin"):
    empty = log[col].isna().to_numpy()
    if empty.any():
      row = int(np.argmax(empty))
      line = line_of_row(path, row, header=True)
      raise DataError(f"{path}, line {line}, column {col!r}: empty (expected an integer)")
    log[col] = log[col].astype(np.int64)
  log["is_click"] = binary_labels(log["is_click"].to_numpy(), path, "is_click", header=True)
  return log


def _read_side(paths: list[str], key: str, columns: list[str], extra=None) -> pd.DataFrame:
  """A user/video table: the key as int64 (first row of a duplicated key wins), others strings."""
  kinds = {key: INT} | {c: CATEGORY for c in columns} | (extra or {})
  parts = [read_delimited(path, kinds) for path in paths]
  # Concatenating categoricals with different categories would fall back to object strings.
  table = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
  for col in columns:
    if not isinstance(table[col].dtype, pd.CategoricalDtype):
      table[col] = table[col].astype("category")
  table = table[table[key].notna()].drop_duplicates(key).reset_index(drop=True)
  table[key] = table[key].astype(np.int64)
  return table


def _join_index(keys: pd.Series, lookup: pd.Series) -> np.ndarray:
  """Row of ``keys`` holding each value of ``lookup`` (-1 where absent): a left join's index."""
  return pd.Index(keys).get_indexer(lookup)


def _take(column: pd.Series, rows: np.ndarray) -> pd.Series:
  """``column[rows]`` with -1 -> missing, keeping a categorical column categorical."""
  if isinstance(column.dtype, pd.CategoricalDtype):
    codes = column.cat.codes.to_numpy()[rows]
    codes = np.where(rows >= 0, codes, -1)
    return pd.Series(pd.Categorical.from_codes(codes, dtype=column.dtype))
  values = column.to_numpy(dtype=np.float64)[rows]
  return pd.Series(np.where(rows >= 0, values, np.nan))


def _first_tag(tags: pd.Series) -> pd.Series:
  """First id of each comma-separated tag list, mapped on the categories (few distinct lists)."""
  firsts = pd.Series(tags.cat.categories).str.split(",", n=1).str[0].str.strip()
  codes, uniques = pd.factorize(firsts)
  old = tags.cat.codes.to_numpy()
  new = np.where(old >= 0, codes[old], -1)
  return pd.Series(pd.Categorical.from_codes(new, categories=pd.Index(uniques)))


def _weekday(dates: np.ndarray) -> np.ndarray:
  """Day of week (0 = Monday) of YYYYMMDD ints, converting the few distinct dates only."""
  uniques, inverse = np.unique(dates, return_inverse=True)
  parsed = pd.to_datetime(pd.Series(uniques).astype(str), format="%Y%m%d", errors="coerce")
  if parsed.isna().any():
    raise DataError(f"kuairand: date {uniques[parsed.isna().to_numpy()][0]} is not YYYYMMDD")
  return parsed.dt.day_of_week.to_numpy()[inverse]
