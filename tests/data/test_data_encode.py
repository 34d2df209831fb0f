"""Encoding: train-only vocabularies, frequency order, OOV, counts, numeric modes."""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest

from mec_jax.data.encode import EncodeOptions, encode, encode_categorical
from mec_jax.data.raw import RawData
from mec_jax.data.schema import CATEGORICAL, NUMERIC, check_split


def _columns(train, valid=(), test=()):
  return {"train": pd.Series(train), "valid": pd.Series(valid), "test": pd.Series(test)}


def _raw(train: dict, valid: dict, test: dict, numeric=()) -> RawData:
  frames = {}
  for split, columns in (("train", train), ("valid", valid), ("test", test)):
    frame = pd.DataFrame(columns)
    frame["label"] = np.arange(len(frame)) % 2
    frames[split] = frame
  return RawData("toy", frames, list(train), numeric=list(numeric))


def test_hand_built_vocab_min_count_and_oov():
  columns = _columns(
    ["b", "a", "b", "c", "a", "b", "d"], valid=["a", "e", None, "c"], test=["d", "b"]
  )
  ids, counts = encode_categorical(columns, min_count=2)
  # b (3 times) -> 0, a (2) -> 1; c, d (once each) fold into OOV = 2.
  np.testing.assert_array_equal(counts, [3, 2, 2])
  np.testing.assert_array_equal(ids["train"], [0, 1, 0, 2, 1, 0, 2])
  # Unseen "e", a missing value never seen in train, and rare "c" all map to OOV.
  np.testing.assert_array_equal(ids["valid"], [1, 2, 2, 2])
  np.testing.assert_array_equal(ids["test"], [2, 0])


def test_min_count_one_keeps_every_train_value_and_breaks_ties_by_value():
  columns = _columns(["b", "d", "a", "b", "c", "a", "b"], test=["z"])
  ids, counts = encode_categorical(columns, min_count=1)
  # b:3, a:2, then c and d (1 each) in lexicographic order; OOV last with count 0.
  np.testing.assert_array_equal(counts, [3, 2, 1, 1, 0])
  np.testing.assert_array_equal(ids["train"], [0, 3, 1, 0, 2, 1, 0])
  np.testing.assert_array_equal(ids["test"], [4])


def test_ties_between_integers_use_numeric_order():
  ids, counts = encode_categorical(_columns([10, 9, 10, 9, 100]), min_count=1)
  np.testing.assert_array_equal(ids["train"], [1, 0, 1, 0, 2])  # 9 before 10, not "10" < "9"
  np.testing.assert_array_equal(counts, [2, 2, 1, 0])


def test_missing_is_a_value_of_its_own():
  ids, counts = encode_categorical(_columns([None, "x", None], test=[None, "x"]), min_count=1)
  np.testing.assert_array_equal(ids["train"], [0, 1, 0])
  np.testing.assert_array_equal(ids["test"], [0, 1])
  np.testing.assert_array_equal(counts, [2, 1, 0])


def test_categorical_dtype_gives_the_same_ids_as_plain_values():
  rng = np.random.default_rng(0)
  train = rng.choice(list("abcdefgh"), 200).tolist() + [None]
  test = rng.choice(list("abcdefghxyz"), 50).tolist() + [None]
  plain, plain_counts = encode_categorical(_columns(train, test=test), min_count=3)
  # Category lists in another order (and with an unused category) must not change anything.
  cat_train = pd.Categorical(train, categories=list("hgfedcbaq"))
  cat_test = pd.Categorical(test, categories=list("zyxabcdefgh"))
  cats = {"train": pd.Series(cat_train), "valid": pd.Series([], dtype="category"),
          "test": pd.Series(cat_test)}  # fmt: skip
  ids, counts = encode_categorical(cats, min_count=3)
  np.testing.assert_array_equal(ids["train"], plain["train"])
  np.testing.assert_array_equal(ids["test"], plain["test"])
  np.testing.assert_array_equal(counts, plain_counts)


def _reference_encoding(train, others, min_count):
  """Independent dict-based encoder: the behaviour the module docstring promises."""
  key = lambda v: ("~missing",) if v is None else ("", v)  # missing sorts last
  freq = collections.Counter(key(v) for v in train)
  kept = sorted((k for k, c in freq.items() if c >= min_count), key=lambda k: (-freq[k], k))
  vocab = {k: i for i, k in enumerate(kept)}
  oov = len(kept)
  encode_one = lambda values: np.array([vocab.get(key(v), oov) for v in values])
  counts = np.bincount(encode_one(train), minlength=oov + 1)
  return encode_one(train), [encode_one(o) for o in others], counts


@pytest.mark.parametrize("min_count", [1, 3, 10])
def test_matches_independent_reference_on_random_zipf_data(min_count):
  rng = np.random.default_rng(min_count)
  draw = lambda n: [
    None if r < 0.03 else f"v{int(z)}" for r, z in zip(rng.random(n), rng.zipf(1.5, n), strict=True)
  ]
  train, valid, test = draw(3000), draw(500), draw(500)
  ids, counts = encode_categorical(_columns(train, valid, test), min_count)
  ref_train, (ref_valid, ref_test), ref_counts = _reference_encoding(
    train, [valid, test], min_count
  )
  np.testing.assert_array_equal(ids["train"], ref_train)
  np.testing.assert_array_equal(ids["valid"], ref_valid)
  np.testing.assert_array_equal(ids["test"], ref_test)
  np.testing.assert_array_equal(counts, ref_counts)
  assert counts.sum() == len(train)


def test_encode_builds_feature_map_and_arrays():
  raw = _raw(
    {"u": ["a", "a", "b"], "x": [1.0, np.nan, 3.0]},
    {"u": ["b"], "x": [10.0]},
    {"u": ["q", "a"], "x": [-5.0, 0.0]},
    numeric=["x"],
  )
  splits, fm, stats = encode(raw, EncodeOptions(min_count=1, numeric="log"))
  assert fm.names == ["u", "x"]
  assert [f.kind for f in fm.fields] == [CATEGORICAL, NUMERIC]
  assert fm.vocab_sizes == [3, 1]
  assert fm.fields[0].oov_id == 2 and fm.fields[1].oov_id == -1
  np.testing.assert_array_equal(fm.fields[1].counts, [3])
  for name, split in splits.items():
    check_split(split, fm, name)
    assert split["ids"].dtype == np.int32 and split["ids"].flags.c_contiguous
    assert split["values"].dtype == np.float32 and split["label"].dtype == np.float32
  np.testing.assert_array_equal(splits["test"]["ids"][:, 0], [2, 0])
  np.testing.assert_array_equal(splits["train"]["values"][:, 0], 1.0)
  np.testing.assert_array_equal(splits["train"]["ids"][:, 1], 0)
  # log mode: log1p(max(v, 0)), missing -> 0, standardized with the train statistics.
  t_train = np.log1p(np.array([1.0, 0.0, 3.0]))
  mean, std = t_train.mean(), t_train.std()
  expect_test = (np.log1p(np.array([0.0, 0.0])) - mean) / std
  np.testing.assert_allclose(splits["train"]["values"][:, 1], (t_train - mean) / std, rtol=1e-6)
  np.testing.assert_allclose(splits["test"]["values"][:, 1], expect_test, rtol=1e-6)
  np.testing.assert_allclose(
    splits["valid"]["values"][:, 1], (np.log1p(10) - mean) / std, rtol=1e-6
  )
  assert stats["x"]["mode"] == "log" and stats["x"]["mean"] == pytest.approx(mean)


def test_bucketize_uses_train_quantiles_and_a_missing_bucket():
  rng = np.random.default_rng(1)
  x_train = np.floor(np.exp(rng.normal(1, 1.5, 2000)))
  x_train[rng.random(2000) < 0.1] = np.nan
  x_test = np.array([np.nan, -3.0, 1e9, 2.0])
  raw = _raw({"x": x_train}, {"x": []}, {"x": x_test}, numeric=["x"])
  splits, fm, stats = encode(raw, EncodeOptions(numeric="bucketize", num_buckets=8))
  field = fm.fields[0]
  assert field.kind == CATEGORICAL
  observed = x_train[~np.isnan(x_train)]
  edges = np.unique(np.quantile(observed, np.linspace(0, 1, 9)[1:-1]))
  np.testing.assert_allclose(stats["x"]["edges"], edges)
  bucket = np.where(np.isnan(x_train), -1, np.searchsorted(edges, x_train, side="right"))
  ids = splits["train"]["ids"][:, 0]
  # ids relabel buckets one-to-one, by train frequency.
  pairs = set(zip(bucket.tolist(), ids.tolist(), strict=True))
  assert len(pairs) == len(set(bucket.tolist())) == field.vocab_size - 1
  np.testing.assert_array_equal(
    field.counts[:-1], np.sort(np.bincount(bucket + 1))[::-1][: len(pairs)]
  )
  assert np.all(np.diff(field.counts[:-1]) <= 0)
  # A bucket no train value fell in (here the one below the lowest edge) is OOV.
  lookup = collections.defaultdict(lambda: field.oov_id, pairs)
  expect = [
    lookup[-1],
    lookup[0],
    lookup[len(edges)],
    lookup[int(np.searchsorted(edges, 2.0, "right"))],
  ]
  np.testing.assert_array_equal(splits["test"]["ids"][:, 0], expect)
  np.testing.assert_array_equal(splits["test"]["values"], 1.0)


def test_empty_train_and_bad_options_raise():
  raw = _raw({"u": []}, {"u": ["a"]}, {"u": ["a"]})
  with pytest.raises(ValueError, match="train split is empty"):
    encode(raw, EncodeOptions())
  with pytest.raises(ValueError, match="data.numeric must be one of"):
    EncodeOptions(numeric="sqrt")
  with pytest.raises(ValueError, match="data.num_buckets must be >= 2"):
    EncodeOptions(numeric="bucketize", num_buckets=1)
  with pytest.raises(ValueError, match="data.min_count must be >= 0"):
    EncodeOptions(min_count=-1)
