"""The raw-value -> id vocabularies and numeric transforms of a trained dataset, for an export.

`build` re-reads the train split through the dataset's own reader (so raw strings are what the
reader gives: Criteo's blank cells are the string ``""``, Frappe's values are libFM indices) and
rebuilds, with `mec_jax.data.encode`'s own functions, what training used:

  * categorical field: the kept raw values and their ids (train-frequency order, ``min_count``,
    the OOV id ``vocab_size - 1``) and the id of a missing value (its own id, or OOV);
  * numeric field, ``numeric="log"``: the train mean / std of ``log1p(max(x, 0))``;
  * numeric field, ``numeric="bucketize"``: the bucket edges, then a vocabulary over buckets.

The rebuilt train counts must equal the `FeatureMap`'s, or `build` refuses (the files changed
since training). Cost: the raw dataset is read into memory once (the Criteo_x1 train split is
tens of GB; streaming it is left to do). Imports the data layer only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mec_jax.data import encode
from mec_jax.data.datasets.delimited import CATEGORY, FLOAT
from mec_jax.data.registry import get_reader
from mec_jax.data.schema import FeatureMap
from mec_jax.errors import DataError


def build(data_config, feature_map: FeatureMap, stats: dict) -> tuple[dict, dict[str, np.ndarray]]:
  """The preprocessing spec of a dataset (JSON-able) and its arrays.

  Args:
    data_config: ``config.data`` (the reader and ``min_count``).
    feature_map: the trained dataset's feature map (its counts are checked).
    stats: the encoder's per-numeric-field statistics (``EncodedDataset.stats``).

  Returns:
    ``(spec, arrays)``: ``spec["fields"][j]`` describes field j (see `mec_jax.export.raw`);
    ``arrays["<key>"]`` the kept raw values (``f003_keys``, strings as unicode) and their ids
    (``f003_ids`` int32) of each categorical field.

  Raises:
    DataError: a field whose rebuilt train counts differ from the feature map's.
  """
  options = encode.EncodeOptions.from_config(data_config)
  reader = get_reader(data_config.name)
  kinds = {}
  if hasattr(reader, "source"):
    from mec_jax.data.streamed import read_raw  # noqa: PLC0415 (pyarrow only when streamed)

    source = reader.source(data_config)
    kinds = dict(source.kinds)
    raw = read_raw(source)
  else:
    raw = reader.read(data_config)
  train = raw.splits["train"]
  fields, arrays = [], {}
  for j, spec in enumerate(feature_map.fields):
    column = train[spec.name]
    entry = {"name": spec.name, "kind": spec.kind}
    if spec.name in raw.numeric:
      entry["number_dtype"] = "float32" if kinds.get(spec.name) == FLOAT else "float64"
      stat = stats[spec.name]
      if stat["mode"] == "log":
        fields.append(entry | {"mode": "log", "mean": stat["mean"], "std": stat["std"]})
        continue
      entry |= {"mode": "bucketize", "edges": list(stat["edges"])}
      column = encode.bucketize({"train": column}, options.num_buckets)[0]["train"]
    else:
      entry["mode"] = "vocabulary"
    keys, ids, missing_id, counts = field_vocabulary(column, options.min_count)
    if spec.counts is not None and not np.array_equal(counts, spec.counts):
      raise DataError(
        f"{data_config.name}: field {spec.name!r}: the train split read again gives other "
        f"counts than training saw (files changed since?); run the pipeline again"
      )
    arrays[f"f{j:03d}_keys"], arrays[f"f{j:03d}_ids"] = keys, ids
    blank = "" if kinds.get(spec.name) == CATEGORY else None  # the reader's spelling of a blank
    fields.append(
      entry
      | {
        "vocab_size": spec.vocab_size,
        "oov_id": spec.oov_id,
        "missing_id": missing_id,
        "missing_key": blank,
        "keys": f"f{j:03d}_keys",
        "ids": f"f{j:03d}_ids",
      }
    )
  return {"dataset": feature_map.dataset, "fields": fields}, arrays


def field_vocabulary(
  column: pd.Series, min_count: int
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
  """One categorical field's vocabulary from its train column, exactly as `encode` builds it.

  Returns:
    ``(keys, ids, missing_id, counts)``: the kept raw values ``[kept]`` (unicode for strings,
    int64 / float64 for numbers) and their int32 ids; the id of a missing value (NaN/None);
    int64 ``[V]`` train counts per id.
  """
  codes, uniques = encode._codes(column)  # noqa: SLF001 (the encoder's own factorization)
  raw_counts = np.bincount(codes, minlength=len(uniques) + 1)
  raw_to_id = encode.frequency_ids(raw_counts, encode.value_rank(uniques), min_count)
  oov = int(raw_to_id[-1])
  counts = np.bincount(raw_to_id[codes], minlength=oov + 1).astype(np.int64)
  kept = np.flatnonzero(raw_to_id[: len(uniques)] < oov)
  values = uniques[kept]
  if values.dtype.kind in "iub":
    keys = np.asarray(values, np.int64)
  elif values.dtype.kind == "f":
    keys = np.asarray(values, np.float64)
  else:
    keys = np.asarray([str(v) for v in values], dtype=str)
  return keys, raw_to_id[kept].astype(np.int32), int(raw_to_id[len(uniques)]), counts
