"""Cache of encoded splits: a second load must not parse; keys follow the options."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mec_jax.data
from mec_jax.data import load_dataset, registry
from mec_jax.data.schema import FeatureMap


@pytest.fixture
def small_synthetic(data_config):
  data_config.name = "synthetic"
  data_config.synthetic.num_rows = 3000
  data_config.synthetic.vocab_sizes = (300, 20)
  return data_config


@pytest.fixture
def read_calls(monkeypatch):
  """Counts calls of the synthetic reader (i.e. parses)."""
  reader = registry.get_reader("synthetic")
  calls = []
  original = reader.read

  def counting_read(data_config):
    calls.append(data_config.name)
    return original(data_config)

  monkeypatch.setattr(reader, "read", counting_read)
  return calls


def test_second_load_hits_the_cache_without_parsing(small_synthetic, read_calls, tmp_path):
  first = load_dataset(small_synthetic, str(tmp_path))
  second = load_dataset(small_synthetic, str(tmp_path))
  assert len(read_calls) == 1
  assert second.cache_path == first.cache_path and os.path.isdir(second.cache_path)
  assert isinstance(second.splits["train"]["ids"], np.memmap)
  for split in ("train", "valid", "test"):
    for key in ("ids", "values", "label"):
      np.testing.assert_array_equal(second.splits[split][key], first.splits[split][key])
      assert second.splits[split][key].dtype == first.splits[split][key].dtype
  assert second.feature_map.vocab_sizes == first.feature_map.vocab_sizes
  for a, b in zip(first.feature_map.fields, second.feature_map.fields, strict=True):
    np.testing.assert_array_equal(a.counts, b.counts)
  assert second.stats == first.stats


def test_options_that_change_the_encoding_change_the_key(small_synthetic, read_calls, tmp_path):
  base = load_dataset(small_synthetic, str(tmp_path))
  small_synthetic.min_count = 3
  other = load_dataset(small_synthetic, str(tmp_path))
  small_synthetic.synthetic.seed = 1
  third = load_dataset(small_synthetic, str(tmp_path))
  assert len(read_calls) == 3
  assert len({base.cache_path, other.cache_path, third.cache_path}) == 3
  assert other.feature_map.vocab_sizes[0] < base.feature_map.vocab_sizes[0]


def test_options_a_reader_ignores_do_not_change_the_key(small_synthetic, read_calls, tmp_path):
  load_dataset(small_synthetic, str(tmp_path))
  small_synthetic.train_end = 20990101  # KuaiRand-only option
  small_synthetic.dir = "/somewhere/else"  # synthetic reads no files
  small_synthetic.num_buckets = 7  # only used when numeric == "bucketize"
  load_dataset(small_synthetic, str(tmp_path))
  assert len(read_calls) == 1


def test_entry_layout_and_no_temp_leftovers(small_synthetic, tmp_path):
  dataset = load_dataset(small_synthetic, str(tmp_path))
  assert os.listdir(tmp_path) == [os.path.basename(dataset.cache_path)]
  files = set(os.listdir(dataset.cache_path))
  arrays = {f"{s}_{k}.npy" for s in ("train", "valid", "test") for k in ("ids", "numeric", "label")}
  assert files == arrays | {"feature_map.json", "counts.npz", "encoding.json", "key.json"}
  with open(os.path.join(dataset.cache_path, "key.json")) as fh:
    key = json.load(fh)
  assert key["dataset"] == "synthetic" and key["config"]["synthetic"]["num_rows"] == 3000
  assert FeatureMap.load(dataset.cache_path).names == dataset.feature_map.names


def test_interrupted_write_leaves_no_entry(small_synthetic, read_calls, tmp_path, monkeypatch):
  def crash(self, directory):
    raise KeyboardInterrupt

  with monkeypatch.context() as patch:
    patch.setattr(FeatureMap, "save", crash)
    with pytest.raises(KeyboardInterrupt):
      load_dataset(small_synthetic, str(tmp_path))
  assert os.listdir(tmp_path) == []
  load_dataset(small_synthetic, str(tmp_path))
  load_dataset(small_synthetic, str(tmp_path))
  assert len(read_calls) == 2


def test_empty_cache_dir_disables_caching(small_synthetic, read_calls):
  dataset = load_dataset(small_synthetic, "")
  load_dataset(small_synthetic, "")
  assert dataset.cache_path is None and len(read_calls) == 2


def test_cache_document_resolves_relative_dirs(data_config, tmp_path, monkeypatch):
  data_config.name = "frappe"
  monkeypatch.chdir(tmp_path)
  data_config.dir = "frappe"
  doc = mec_jax.data.cache_document(data_config)
  assert doc["config"]["dir"] == os.path.join(str(tmp_path), "frappe")
  assert "synthetic" not in doc["config"] and "train_end" not in doc["config"]


def test_damaged_entry_is_reported(small_synthetic, tmp_path):
  dataset = load_dataset(small_synthetic, str(tmp_path))
  os.remove(os.path.join(dataset.cache_path, "valid_ids.npy"))
  with pytest.raises(ValueError, match=r"lacks \['valid_ids.npy'\].*delete the directory"):
    load_dataset(small_synthetic, str(tmp_path))
