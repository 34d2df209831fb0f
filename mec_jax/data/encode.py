"""Encoding of raw splits into the integer batch format, with vocabularies from the train split.

Categorical fields:
  * the vocabulary is built from the **train split only**; a value needs ``min_count`` train
    occurrences to get an id of its own, rarer values share the field's OOV id;
  * ids are ordered by train frequency (most frequent = id 0); ties are broken by the value's
    natural order (numbers numerically, strings lexicographically), a missing value sorting last;
  * the OOV id is ``vocab_size - 1`` and always exists, so unseen valid/test values have a home;
  * a missing value (NaN/None) is a value like any other (in CTR logs missingness is a signal);
  * ``counts[id]`` is the number of train rows with that id (the OOV id counts the rare train
    values folded into it), the input of MEC's popularity weights.

Numeric fields, ``numeric="log"`` (kind ``numeric``: vocab 1, id 0, the value carries the number):
  ``t = log1p(max(v, 0))``, missing -> ``t = 0``, then standardized with the train mean / std
  (std 0 -> 1). ``log1p`` rather than Criteo's ``floor(log(v)^2)`` because the result is a real
  value multiplying an embedding, not a bucket id; negative counts (Criteo I2) are clipped at 0.

Numeric fields, ``numeric="bucketize"`` (kind ``categorical``):
  ``num_buckets`` equal-frequency buckets with edges at train quantiles (duplicate edges merged,
  so heavy ties give fewer buckets); missing values get their own bucket. The bucket numbers then
  go through the categorical path above (frequency-ordered ids, ``min_count``, OOV).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mec_jax.data.raw import RawData
from mec_jax.data.schema import CATEGORICAL, NUMERIC, SPLITS, FeatureMap, FieldSpec
from mec_jax.data.values import FieldValues
from mec_jax.errors import ConfigError, DataError

# 2: values stored for numeric fields only (`FieldValues`); ids, labels and statistics unchanged.
ENCODE_VERSION = 2
NUMERIC_MODES = ("log", "bucketize")
_MISSING_BUCKET = -1


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
  """Options that change the encoded arrays (all part of the cache key).

  Attributes:
    min_count: train occurrences a value needs for an id of its own (values below -> OOV).
    numeric: ``"log"`` or ``"bucketize"``, how numeric fields are encoded.
    num_buckets: buckets per numeric field when ``numeric == "bucketize"``.
  """

  min_count: int = 1
  numeric: str = "log"
  num_buckets: int = 32

  def __post_init__(self):
    if self.min_count < 0:
      raise ConfigError(f"data.min_count must be >= 0, got {self.min_count}")
    if self.numeric not in NUMERIC_MODES:
      raise ConfigError(f"data.numeric must be one of {NUMERIC_MODES}, got {self.numeric!r}")
    if self.numeric == "bucketize" and self.num_buckets < 2:
      raise ConfigError(f"data.num_buckets must be >= 2, got {self.num_buckets}")

  @classmethod
  def from_config(cls, data_config) -> EncodeOptions:
    return cls(
      min_count=int(data_config.get("min_count", 1)),
      numeric=str(data_config.get("numeric", "log")),
      num_buckets=int(data_config.get("num_buckets", 32)),
    )


def encode(
  raw: RawData, options: EncodeOptions, release_raw: bool = False
) -> tuple[dict[str, dict[str, np.ndarray]], FeatureMap, dict[str, dict]]:
  """Encodes the raw splits of a dataset.

  Args:
    raw: raw train/valid/test frames and field list.
    options: encoding options.
    release_raw: drop each raw column from ``raw.splits`` once encoded, so that the peak memory
      of a big dataset is the encoded arrays plus one field, not plus the whole raw frame.

  Returns:
    ``(splits, feature_map, stats)``: ``splits[name]`` holds ``ids`` int32 ``[N, F]``, ``values``
    a `FieldValues` ``[N, F]`` (stored for numeric fields only) and ``label`` float32 ``[N]``
    (F = ``len(raw.fields)``, in that order);
    ``stats`` records per numeric field the train statistics used (mean/std or bucket edges).
  """
  if len(raw.splits["train"]) == 0:
    raise DataError(f"{raw.dataset}: the train split is empty; nothing to build a vocabulary from")
  numeric = set(raw.numeric)
  num_fields = len(raw.fields)
  value_fields = [j for j, f in enumerate(raw.fields) if f in numeric and options.numeric == "log"]
  splits = {}
  for s in SPLITS:
    n = len(raw.splits[s])
    splits[s] = {
      "ids": np.zeros((n, num_fields), np.int32),
      "values": FieldValues(np.zeros((n, len(value_fields)), np.float32), value_fields, num_fields),
      "label": np.ascontiguousarray(raw.splits[s][raw.label], dtype=np.float32),
    }
  fields, stats = [], {}
  for j, name in enumerate(raw.fields):
    columns = {s: raw.splits[s][name] for s in SPLITS}
    if name in numeric and options.numeric == "log":
      values, mean, std = log_standardize(columns)
      stats[name] = {"mode": "log", "mean": mean, "std": std}
      fields.append(FieldSpec(name, NUMERIC, 1, -1, np.array([len(columns["train"])])))
      for s in SPLITS:
        splits[s]["values"].numeric[:, value_fields.index(j)] = values[s]
    else:
      if name in numeric:
        columns, edges = bucketize(columns, options.num_buckets)
        stats[name] = {"mode": "bucketize", "edges": edges.tolist()}
      ids, counts = encode_categorical(columns, options.min_count)
      fields.append(FieldSpec(name, CATEGORICAL, len(counts), len(counts) - 1, counts))
      for s in SPLITS:
        splits[s]["ids"][:, j] = ids[s]
    del columns
    if release_raw:
      for s in SPLITS:
        del raw.splits[s][name]
  return splits, FeatureMap(raw.dataset, fields), stats


def encode_categorical(
  columns: dict[str, pd.Series], min_count: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """Train-only vocabulary of one categorical field and the ids of every split.

  Args:
    columns: ``{split: values}``; ``columns["train"]`` defines the vocabulary.
    min_count: train occurrences needed for an own id.

  Returns:
    ``(ids, counts)``: ``ids[split]`` int32 ``[rows]`` in ``[0, V)``; ``counts`` int64 ``[V]``
    train occurrences per id, ``V - 1`` being the OOV id.
  """
  train_codes, uniques = _codes(columns["train"])
  num_raw = len(uniques) + 1  # last raw slot = missing value
  raw_counts = np.bincount(train_codes, minlength=num_raw)
  raw_to_id = frequency_ids(raw_counts, value_rank(uniques), min_count)
  oov = int(raw_to_id[-1])
  ids = {"train": raw_to_id[train_codes]}
  for split, column in columns.items():
    if split != "train":
      ids[split] = raw_to_id[_lookup(column, uniques)]
  counts = np.bincount(ids["train"], minlength=oov + 1).astype(np.int64)
  return ids, counts


def frequency_ids(raw_counts: np.ndarray, rank: np.ndarray, min_count: int) -> np.ndarray:
  """Id of each raw value: train-frequency order, ties by ``rank``, rare values -> OOV.

  Args:
    raw_counts: int64 ``[num_raw]`` train occurrences of each raw value (0 = valid/test only).
    rank: int64 ``[num_raw]`` natural-order rank of each raw value (the tie break).
    min_count: train occurrences needed for an own id.

  Returns:
    int32 ``[num_raw + 1]``: ``raw_to_id[r]`` for every raw code; the extra last slot (what code
    -1, an unseen value, indexes) holds the OOV id ``V - 1``.
  """
  order = np.lexsort((rank, -raw_counts))
  kept = order[raw_counts[order] >= max(min_count, 1)]
  oov = len(kept)
  raw_to_id = np.full(len(raw_counts) + 1, oov, dtype=np.int32)
  raw_to_id[kept] = np.arange(oov, dtype=np.int32)
  return raw_to_id


def _codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
  """Factorizes a column: int64 codes into ``uniques``, missing -> ``len(uniques)``."""
  if isinstance(column.dtype, pd.CategoricalDtype):
    codes = column.cat.codes.to_numpy().astype(np.int64)
    uniques = pd.Index(column.cat.categories)
  else:
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    uniques = pd.Index(uniques)
  codes[codes < 0] = len(uniques)
  return codes, uniques


def _lookup(column: pd.Series, uniques: pd.Index) -> np.ndarray:
  """Raw train codes of a valid/test column: missing -> ``len(uniques)``, unseen -> -1."""
  codes, own_uniques = _codes(column)
  to_train = np.append(uniques.get_indexer(own_uniques), len(uniques)).astype(np.int64)
  return to_train[codes]


def value_rank(uniques: pd.Index) -> np.ndarray:
  """Rank of each unique value in its natural order, plus the missing slot ranked last."""
  try:
    order = uniques.argsort()
  except TypeError:  # mixed types: fall back to the string form, still deterministic
    order = uniques.astype(str).argsort()
  rank = np.empty(len(uniques) + 1, dtype=np.int64)
  rank[order] = np.arange(len(uniques))
  rank[-1] = len(uniques)
  return rank


def log_standardize(
  columns: dict[str, pd.Series],
) -> tuple[dict[str, np.ndarray], float, float]:
  """``(log1p(max(x, 0)) - mean) / std`` with train statistics; missing -> 0 before standardizing.

  Returns:
    ``(values, mean, std)``: ``values[split]`` float32 ``[rows]``.
  """
  transformed = {}
  for split, column in columns.items():
    x = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    t = np.log1p(np.maximum(x, 0.0))
    transformed[split] = np.where(np.isnan(t), 0.0, t)
  mean = float(transformed["train"].mean())
  std = float(transformed["train"].std())
  std = std if std > 0 else 1.0
  return {s: ((t - mean) / std).astype(np.float32) for s, t in transformed.items()}, mean, std


def bucketize(
  columns: dict[str, pd.Series], num_buckets: int
) -> tuple[dict[str, pd.Series], np.ndarray]:
  """Bucket number of each value (edges at train quantiles; missing -> its own bucket -1).

  Returns:
    ``(buckets, edges)``: ``buckets[split]`` int64 Series ``[rows]``, ``edges`` float64.
  """
  numbers = {
    s: pd.to_numeric(c, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    for s, c in columns.items()
  }
  train = numbers["train"][~np.isnan(numbers["train"])]
  quantiles = np.linspace(0.0, 1.0, num_buckets + 1)[1:-1]
  edges = np.unique(np.quantile(train, quantiles)) if len(train) else np.zeros(0)
  buckets = {}
  for split, x in numbers.items():
    b = np.searchsorted(edges, x, side="right").astype(np.int64)
    b[np.isnan(x)] = _MISSING_BUCKET
    buckets[split] = pd.Series(b)
  return buckets, edges
