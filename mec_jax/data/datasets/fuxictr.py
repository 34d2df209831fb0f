"""A dataset directory built by FuxiCTR (``data.name=fuxictr``, ``data.dir=<data_root>/<dataset_id>``).

FuxiCTR's ``build_dataset`` writes, per dataset::

  feature_map.json   {"dataset_id", "num_fields", "total_features", "input_length", "labels": [...],
                      "features": [{"<name>": {"type": "categorical", "padding_idx": 0,
                      "vocab_size": V, "source": ..., ...}}, {"<name>": {"type": "numeric", ...}}]}
  train.parquet  valid.parquet  test.parquet       (or train/part_00000.parquet, ... in blocks)

Each parquet column holds one feature: categorical features as int ids (FuxiCTR's tokenizer:
``__PAD__`` = 0, vocabulary 1..V-2 by train frequency, ``__OOV__`` = V-1, missing values -> OOV),
numeric features as floats (already normalized when FuxiCTR was told to), labels as 0/1.

**Ids are remapped**, not kept: FuxiCTR's ids become raw values that mec_jax's encoder turns into
its own ids (train-only vocabulary, frequency order, ``data.min_count``, OOV = ``vocab_size - 1``,
see `mec_jax.data.encode`), like every other reader, so the cache, the train counts behind MEC's
popularity weights and the schema hold unchanged. FuxiCTR's PAD id never occurs in categorical
columns and disappears; its OOV id (the rare train values it folded, and every unseen value of
valid/test) is an ordinary value with a row of its own, which is what FuxiCTR trains too. Vocab
sizes therefore match FuxiCTR's (PAD out, mec_jax's OOV in) whenever FuxiCTR's OOV id occurs in
train, but row order does not: tables indexed by FuxiCTR ids are re-indexed with `id_maps` (on
this dataset ``pretrain.external_index=auto`` reads external tables in FuxiCTR's order and checks
their PAD row, `mec_jax.external`), and `mec_jax.fuxictr_export` writes a run's tables back in it.

Only ``categorical`` and ``numeric`` features are read; ``meta`` columns (e.g. gAUC group ids) are
skipped; ``sequence`` and ``embedding`` features are rejected with a DataError. The first label
in ``labels`` is the click label. FuxiCTR-normalized numeric values may be negative, which
``data.numeric="log"`` would clip: such data needs ``data.numeric=bucketize``.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mec_jax.data.raw import RawData, data_dir_of, max_rows_of
from mec_jax.data.schema import SPLITS, FeatureMap
from mec_jax.errors import DataError

VERSION = 1
CONFIG_KEYS = ("dir", "max_rows")
HINT = (
  "Point data.dir at a dataset directory written by FuxiCTR's build_dataset "
  "(feature_map.json plus train/valid/test parquet)."
)
SUPPORTED = ("categorical", "numeric")
SKIPPED = ("meta",)


def read_feature_map(directory: str) -> dict:
  """FuxiCTR's ``feature_map.json`` as ``{"dataset_id", "labels", "features": {name: spec}}``."""
  path = os.path.join(directory, "feature_map.json")
  if not os.path.isfile(path):
    raise DataError(f"{path}: not found. {HINT}")
  try:
    with open(path) as fh:
      raw = json.load(fh)
  except json.JSONDecodeError as err:
    raise DataError(f"{path}: not valid JSON ({err})") from None
  missing = [k for k in ("dataset_id", "labels", "features") if k not in raw]
  if missing:
    raise DataError(
      f"{path}: missing keys {missing}; FuxiCTR's feature map has dataset_id, labels, features"
    )
  features = {}
  for entry in raw["features"]:
    if not isinstance(entry, dict) or len(entry) != 1:
      raise DataError(f"{path}: each 'features' entry must be {{name: spec}}, got {entry!r}")
    ((name, spec),) = entry.items()
    kind = spec.get("type")
    if kind in SKIPPED:
      continue
    if kind not in SUPPORTED:
      raise DataError(
        f"{path}: feature {name!r} has type {kind!r}; mec_jax reads {SUPPORTED} features "
        f"(and skips {SKIPPED})"
      )
    if kind == "categorical" and int(spec.get("vocab_size", 0)) < 1:
      raise DataError(f"{path}: categorical feature {name!r} lacks a positive vocab_size")
    features[name] = spec
  if not raw["labels"]:
    raise DataError(f"{path}: 'labels' is empty")
  return {"dataset_id": raw["dataset_id"], "labels": list(raw["labels"]), "features": features}


def split_files(directory: str, split: str) -> list[str]:
  """``<split>.parquet``, or the sorted ``<split>/*.parquet`` blocks of ``data_block_size`` builds."""
  single = os.path.join(directory, f"{split}.parquet")
  if os.path.isfile(single):
    return [single]
  blocks = sorted(glob.glob(os.path.join(directory, split, "*.parquet")))
  if not blocks:
    raise DataError(f"{directory}: no {split} split ({split}.parquet or {split}/*.parquet). {HINT}")
  return blocks


def _read_split(files: list[str], columns: list[str], max_rows: int) -> pd.DataFrame:
  frames, rows = [], 0
  for path in files:
    have = pq.read_schema(path).names
    missing = [c for c in columns if c not in have]
    if missing:
      raise DataError(f"{path}: missing columns {missing} of feature_map.json; it has {have}")
    frames.append(pq.read_table(path, columns=columns).to_pandas())
    rows += len(frames[-1])
    if max_rows and rows >= max_rows:
      break
  frame = pd.concat(frames, ignore_index=True)
  return frame.iloc[:max_rows] if max_rows else frame


def _check_ids(frame: pd.DataFrame, name: str, vocab_size: int, files: list[str]) -> None:
  ids = frame[name].to_numpy()
  if not np.issubdtype(ids.dtype, np.integer):
    raise DataError(f"{files[0]}: categorical column {name!r} holds {ids.dtype}, expected int ids")
  bad = (ids < 0) | (ids >= vocab_size)
  if bad.any():
    row = int(np.argmax(bad))
    raise DataError(
      f"{files[0]} (split row {row}): column {name!r} has id {ids[row]}, outside FuxiCTR's "
      f"[0, {vocab_size}) of feature_map.json"
    )


def read(data_config) -> RawData:
  directory = data_dir_of(data_config, "fuxictr", HINT)
  meta = read_feature_map(directory)
  features, label = meta["features"], meta["labels"][0]
  numeric = [n for n, s in features.items() if s["type"] == "numeric"]
  columns = [*features, label]
  max_rows = max_rows_of(data_config)
  splits = {}
  for split in SPLITS:
    files = split_files(directory, split)
    frame = _read_split(files, columns, max_rows)
    for name, spec in features.items():
      if spec["type"] == "categorical":
        _check_ids(frame, name, int(spec["vocab_size"]), files)
      elif str(data_config.get("numeric", "log")) == "log" and (frame[name] < 0).any():
        raise DataError(
          f"{files[0]}: numeric feature {name!r} has negative values (FuxiCTR-normalized?), which "
          "data.numeric='log' would clip at 0; set data.numeric=bucketize"
        )
    labels = frame[label].to_numpy(dtype=np.float64)
    bad = ~np.isin(labels, (0.0, 1.0))
    if bad.any():
      row = int(np.argmax(bad))
      raise DataError(
        f"{files[0]} (split row {row}): label {label!r} is {labels[row]}, expected 0 or 1"
      )
    frame[label] = labels.astype(np.float32)
    splits[split] = frame.rename(columns={label: "label"})
  return RawData(str(meta["dataset_id"]), splits, list(features), numeric=numeric)


def id_maps(data_config, feature_map: FeatureMap, train_ids: np.ndarray) -> dict[str, np.ndarray]:
  """Per categorical field, int64 ``[FuxiCTR vocab_size]``: the mec_jax id of each FuxiCTR id.

  Read off the train split (its FuxiCTR ids paired with the encoded ``train_ids`` row by row), so
  it is exactly what the encoder did. FuxiCTR ids absent from train (PAD, tokens only seen when
  FuxiCTR's vocabulary was built) map to mec_jax's OOV id, as their rows would at serving time.

  Args:
    data_config: the ``config.data`` the dataset was loaded with.
    feature_map: the encoded dataset's feature map.
    train_ids: int ``[rows, F]`` encoded train ids (``dataset.splits["train"]["ids"]``).

  Raises:
    DataError: the encoded ids do not come from this directory (a FuxiCTR id with two mec_jax ids).
  """
  directory = data_dir_of(data_config, "fuxictr", HINT)
  features = read_feature_map(directory)["features"]
  categorical = [n for n, s in features.items() if s["type"] == "categorical"]
  files = split_files(directory, "train")
  frame = _read_split(files, categorical, max_rows_of(data_config))
  if len(frame) != len(train_ids):
    raise DataError(
      f"{files[0]}: {len(frame)} train rows, the encoded dataset has {len(train_ids)}"
    )
  maps = {}
  for name in categorical:
    spec = feature_map.fields[feature_map.index(name)]
    fx = frame[name].to_numpy().astype(np.int64)
    ours = np.asarray(train_ids[:, feature_map.index(name)], np.int64)
    mapping = np.full(int(features[name]["vocab_size"]), spec.oov_id, np.int64)
    mapping[fx] = ours
    if (mapping[fx] != ours).any():
      raise DataError(f"{files[0]}: column {name!r} does not match the encoded dataset's ids")
    maps[name] = mapping
  return maps
