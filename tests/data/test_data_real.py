"""The real files in <repo>/../shared/data (skipped when absent): counts from PROVENANCE.md."""

from __future__ import annotations

import numpy as np
import pytest

from mec_jax.data import load_dataset, registry
from mec_jax.data.schema import check_split

SPLITS = ("train", "valid", "test")


def _load(data_config, shared_data, name, subdir):
  path = shared_data / subdir
  if not path.exists():
    pytest.skip(f"{path} not present")
  data_config.name, data_config.dir = name, str(path)
  dataset = load_dataset(data_config, "")
  for split in SPLITS:
    check_split(dataset.splits[split], dataset.feature_map, split)
  for field in dataset.feature_map.fields:  # counts come from the train split only
    assert field.counts.sum() == dataset.num_rows("train")
  return dataset


def _totals(dataset):
  rows = sum(dataset.num_rows(s) for s in SPLITS)
  positives = sum(float(dataset.splits[s]["label"].sum()) for s in SPLITS)
  return rows, positives


def test_frappe(data_config, shared_data):
  dataset = _load(data_config, shared_data, "frappe", "frappe")
  assert _totals(dataset) == (86_582, 28_599)
  assert dataset.feature_map.num_fields == 10
  assert [dataset.num_rows(s) for s in SPLITS] == [69_266, 8_658, 8_658]
  assert abs(dataset.label_rate("train") - 0.330) < 0.005
  # item: 4,082 apps in all; the train split sees nearly all of them.
  assert 4_000 <= dataset.feature_map.vocab_sizes[1] <= 4_083


def test_movielens_100k(data_config, shared_data):
  dataset = _load(data_config, shared_data, "movielens", "movielens_100k")
  assert _totals(dataset) == (100_000, 55_375)
  fm = dataset.feature_map
  assert fm.names == registry.get_reader("movielens").FIELDS
  assert fm.vocab_sizes[fm.index("gender")] == 3  # M, F + OOV
  assert fm.vocab_sizes[fm.index("genre")] <= 20  # 19 genres + OOV
  assert fm.vocab_sizes[fm.index("zip3")] <= 383  # 382 prefixes + OOV


def test_criteo_sample(data_config, shared_data):
  dataset = _load(data_config, shared_data, "criteo_kaggle", "criteo_sample/criteo_sample_2k.txt")
  assert _totals(dataset) == (1_994, 412)
  fm = dataset.feature_map
  assert (
    fm.num_fields == 39 and fm.fields[0].kind == "numeric" and fm.fields[13].kind == "categorical"
  )
  # C9 has 2 distinct values in the sample: both reach train.
  assert fm.vocab_sizes[fm.index("C9")] == 3
  values = dataset.splits["train"]["values"][:, :13]
  np.testing.assert_allclose(values.mean(0), 0, atol=1e-4)  # standardized with train statistics


def test_ipinyou_sample(data_config, shared_data):
  dataset = _load(data_config, shared_data, "ipinyou", "ipinyou_sample")
  fm = dataset.feature_map
  assert fm.num_fields == 16 and fm.names[3] == "IP" and fm.names[-1] == "slotprice"
  assert dataset.num_rows("train") + dataset.num_rows("valid") == 26_773
  assert dataset.num_rows("test") == 21_150
  assert _totals(dataset)[1] == 255 + 50
  assert fm.vocab_sizes[fm.index("IP")] > 10_000


def test_avazu_sample(data_config, shared_data):
  dataset = _load(data_config, shared_data, "avazu_kaggle", "avazu_sample/avazu_sample.csv")
  assert _totals(dataset) == (100, 20)
  assert dataset.feature_map.num_fields == 23
