"""Grain batch loader: seeded order, resumable state, disjoint per-process shards, padding."""

import json

import numpy as np
import pytest

from mec_jax.data.loader import BatchLoader


def _split(rows=103, fields=3):
  ids = np.arange(rows * fields, dtype=np.int32).reshape(rows, fields)
  return {
    "ids": ids,
    "values": ids.astype(np.float32) / 10,
    "label": (np.arange(rows) % 2).astype(np.float32),
  }


def _rows(batch):
  return batch["ids"][:, 0] // 3  # row index, from how _split numbers the ids


def test_batches_are_gathered_rows():
  split = _split()
  loader = BatchLoader(split, 10, shuffle=True, seed=1, drop_remainder=True)
  for batch in loader.iterator():
    rows = _rows(batch)
    np.testing.assert_array_equal(batch["ids"], split["ids"][rows])
    np.testing.assert_array_equal(batch["values"], split["values"][rows])
    np.testing.assert_array_equal(batch["label"], split["label"][rows])
    assert batch["ids"].dtype == np.int32 and batch["label"].dtype == np.float32


def test_order_is_deterministic_per_seed_and_epoch():
  def order(seed, epoch):
    loader = BatchLoader(_split(), 10, shuffle=True, seed=seed, drop_remainder=True)
    return np.concatenate([_rows(b) for b in loader.iterator({"epoch": epoch, "next_batch": 0})])

  first = order(0, 0)
  np.testing.assert_array_equal(first, order(0, 0))
  assert len(first) == 100 and len(set(first)) == 100  # drop_remainder: 10 full batches
  assert not np.array_equal(first, order(1, 0))
  assert not np.array_equal(first, order(0, 1))


def test_state_restore_resumes_at_the_same_batch():
  loader = BatchLoader(_split(), 8, shuffle=True, seed=3, drop_remainder=True)
  iterator = loader.iterator({"epoch": 2, "next_batch": 0})
  for _ in range(4):
    next(iterator)
  state = json.loads(json.dumps(iterator.get_state()))  # JSON-able
  assert state == {"epoch": 2, "next_batch": 4}
  rest = [_rows(b) for b in iterator]
  resumed = BatchLoader(_split(), 8, shuffle=True, seed=3, drop_remainder=True).iterator(state)
  assert len(resumed) == len(rest) == loader.num_batches - 4
  for a, b in zip(rest, resumed, strict=True):
    np.testing.assert_array_equal(a, _rows(b))
  iterator.set_state({"epoch": 2, "next_batch": 11})
  np.testing.assert_array_equal(_rows(next(iterator)), rest[-1])


def test_process_shards_are_disjoint_and_cover_the_batch():
  kwargs = dict(shuffle=True, seed=5, drop_remainder=True, process_count=4)
  loaders = [BatchLoader(_split(), 12, process_index=p, **kwargs) for p in range(4)]
  full = BatchLoader(_split(), 12, shuffle=True, seed=5, drop_remainder=True, process_count=1)
  for b in range(full.num_batches):
    parts = [_rows(loader.batch(0, b)) for loader in loaders]
    assert all(len(p) == 3 for p in parts)
    joined = np.concatenate(parts)
    assert len(set(joined)) == 12
    np.testing.assert_array_equal(np.sort(joined), np.sort(full.global_rows(0, b)))


def test_eval_loader_keeps_file_order_and_pads_last_batch():
  loader = BatchLoader(_split(), 25, shuffle=False, pad_to_batch=True)
  batches = list(loader.iterator())
  assert [len(b["label"]) for b in batches] == [25] * 5
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.sum() == 103 and np.all(mask[:103] == 1)
  rows = np.concatenate([_rows(b) for b in batches])[mask > 0]
  np.testing.assert_array_equal(rows, np.arange(103))
  unpadded = BatchLoader(_split(), 25, shuffle=False)
  assert [len(b["label"]) for b in unpadded.iterator()] == [25, 25, 25, 25, 3]


def test_loader_errors():
  with pytest.raises(ValueError, match="missing arrays \\['label'\\]"):
    BatchLoader({"ids": np.zeros((2, 1)), "values": np.zeros((2, 1))}, 2, shuffle=False)
  with pytest.raises(ValueError, match="multiple of the process count 4"):
    BatchLoader(_split(), 10, shuffle=False, process_index=0, process_count=4)
  with pytest.raises(ValueError, match="give no batch"):
    BatchLoader(_split(rows=5), 8, shuffle=True, drop_remainder=True)
  loader = BatchLoader(_split(), 10, shuffle=False)
  with pytest.raises(ValueError, match="next_batch in"):
    loader.iterator({"epoch": 0, "next_batch": 99})


def test_shuffled_padded_batches_keep_mask_aligned():
  loader = BatchLoader(_split(), 25, shuffle=True, seed=2, pad_to_batch=True)
  batches = list(loader.iterator())
  rows = np.concatenate([_rows(b)[b["mask"] > 0] for b in batches])
  np.testing.assert_array_equal(np.sort(rows), np.arange(103))


def test_batches_of_a_cached_split_give_dense_values(tmp_path, data_config):
  # Cached splits store values for numeric fields only; a batch still has [b, F] float32 values,
  # 1.0 in the categorical columns and the encoded number in the numeric ones.
  from data_fixtures import write_criteo_x1

  from mec_jax.data import load_dataset

  write_criteo_x1(tmp_path, {"train": 40, "valid": 4, "test": 4})
  data_config.name, data_config.dir = "criteo_x1", str(tmp_path)
  dataset = load_dataset(data_config, str(tmp_path / "cache"))
  split = dataset.splits["train"]
  numeric = np.asarray(split["values"].numeric)  # [40, 13], the I-fields
  loader = BatchLoader(split, 8, shuffle=True, seed=0, drop_remainder=True, prefetch=0)
  batch = loader.batch(0, 2)
  rows = loader.local_rows(0, 2)[0]
  rows = np.sort(rows)
  assert batch["values"].shape == (8, 39) and batch["values"].dtype == np.float32
  np.testing.assert_array_equal(batch["values"][:, 13:], 1.0)
  np.testing.assert_array_equal(batch["values"][:, :13], numeric[rows])
  np.testing.assert_array_equal(batch["ids"], np.asarray(split["ids"])[rows])


def test_memory_mapped_batches_follow_the_documented_order(tmp_path):
  # The order is part of the resume contract: batch b of epoch e holds rows
  # default_rng([seed, e]).permutation(N)[b * B:(b + 1) * B], read in increasing row order.
  split = _split(rows=97)
  for name, array in split.items():
    np.save(tmp_path / f"{name}.npy", array)
  mapped = {name: np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in split}
  loader = BatchLoader(mapped, 16, shuffle=True, seed=7, drop_remainder=True, prefetch=0)
  order = np.random.default_rng([7, 3]).permutation(97)
  for b, batch in enumerate(loader.iterator({"epoch": 3, "next_batch": 0})):
    rows = np.sort(order[b * 16 : (b + 1) * 16])
    assert all(type(batch[k]) is np.ndarray for k in batch)  # copies, not views of the map
    np.testing.assert_array_equal(batch["ids"], split["ids"][rows])
    np.testing.assert_allclose(batch["values"], split["values"][rows])
    np.testing.assert_array_equal(batch["label"], split["label"][rows])
