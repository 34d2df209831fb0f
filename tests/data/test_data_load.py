"""Public API: registry, load_dataset, EncodedDataset.summary."""

from __future__ import annotations

import numpy as np
import pytest

from mec_jax.data import EncodedDataset, dataset_names, load_dataset
from mec_jax.data.schema import check_split

NAMES = [
  "criteo_x1", "criteo_kaggle", "avazu_x1", "kuairand", "frappe", "ipinyou", "movielens",
  "synthetic",
]  # fmt: skip


def test_registry_has_every_dataset_and_each_reader_declares_its_keys():
  from mec_jax.data import registry

  assert set(NAMES) <= set(dataset_names())
  for name in dataset_names():
    reader = registry.get_reader(name)
    assert callable(reader.read) and isinstance(reader.VERSION, int)
    assert set(reader.CONFIG_KEYS) <= {
      "dir", "variant", "max_rows", "split_seed", "split_fractions", "train_end", "valid_end",
      "synthetic",
    }  # fmt: skip


def test_unknown_name_lists_the_valid_ones(data_config):
  data_config.name = "criteo"
  with pytest.raises(ValueError, match="unknown dataset data.name='criteo'.*criteo_x1.*synthetic"):
    load_dataset(data_config, "")


def test_summary_reports_rows_rates_vocab_and_compressed_fields(data_config):
  data_config.synthetic.num_rows = 5000
  data_config.synthetic.vocab_sizes = (2000, 30)
  data_config.synthetic.num_numeric = 1
  dataset = load_dataset(data_config, "")
  assert isinstance(dataset, EncodedDataset)
  assert set(dataset.splits) == {"train", "valid", "test"}
  assert [dataset.num_rows(s) for s in ("train", "valid", "test")] == [4000, 500, 500]
  for name, split in dataset.splits.items():
    check_split(split, dataset.feature_map, name)
  text = dataset.summary(min_vocab=100)
  assert "4,000 rows" in text and "500 rows" in text
  rate = f"{np.mean(dataset.splits['valid']['label']):.4f}"
  assert rate in text
  assert "fields with vocab >= 100: ['cat0']" in text
  assert "num0" in text and "numeric" in text
  assert "none" in dataset.summary(min_vocab=10**6)
