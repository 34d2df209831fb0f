"""The FuxiCTR reader on a dataset directory written the way FuxiCTR's build_dataset writes it."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from mec_jax.data import load_dataset
from mec_jax.data.schema import CATEGORICAL, NUMERIC, check_split
from mec_jax.errors import DataError

SPLITS = ("train", "valid", "test")
MIN_COUNT = 2  # FuxiCTR's min_categr_count: rarer train tokens become __OOV__


def _fuxictr_vocab(tokens) -> dict:
  """FuxiCTR's Tokenizer.build_vocab (remap=True): most_common order from 1, PAD 0, OOV last."""
  words = [t for t, c in Counter(tokens).most_common() if c >= MIN_COUNT and t != ""]
  vocab = {t: i for i, t in enumerate(words, 1)}
  vocab["__PAD__"] = 0
  vocab["__OOV__"] = max(vocab.values()) + 1
  return vocab


def write_fuxictr_dataset(root, rows=(300, 60, 50), seed=0, blocks=True) -> dict:
  """Raw tokens -> FuxiCTR ids -> feature_map.json + parquet, as build_dataset lays them out.

  ``valid`` is written in blocks (``valid/part_00000.parquet`` ...), as with data_block_size > 0.
  Returns the raw token frames and vocabularies, so a test can check the ids it reads back.
  """
  rng = np.random.default_rng(seed)
  raw = {}
  for split, n in zip(SPLITS, rows, strict=True):
    user = [f"u{int(x)}" for x in rng.zipf(1.5, n) % 40]
    item = [f"i{int(x)}" if x % 7 else "" for x in rng.integers(0, 25, n)]  # "" = missing
    if split == "test":
      item[0] = "never_in_train"
    raw[split] = pd.DataFrame(
      {
        "user": user,
        "item": item,
        "price": rng.uniform(0, 5, n).astype(np.float32),
        "query_id": rng.integers(0, 9, n),
        "clk": rng.integers(0, 2, n).astype(np.int64),
      }
    )
  vocabs = {c: _fuxictr_vocab(raw["train"][c]) for c in ("user", "item")}
  features = [
    {c: {"source": "", "type": "categorical", "padding_idx": 0, "vocab_size": len(v)}}
    for c, v in vocabs.items()
  ]
  features += [{"price": {"source": "", "type": "numeric"}}, {"query_id": {"type": "meta"}}]
  feature_map = {
    "dataset_id": "tiny_fuxictr",
    "num_fields": 3,
    "total_features": sum(len(v) for v in vocabs.values()) + 1,
    "input_length": 4,
    "labels": ["clk"],
    "features": features,
  }
  root.mkdir(parents=True, exist_ok=True)
  (root / "feature_map.json").write_text(json.dumps(feature_map, indent=4))
  for split, frame in raw.items():
    encoded = frame.copy()
    for c, vocab in vocabs.items():  # encode_category: vocab.get(x, OOV)
      encoded[c] = frame[c].map(lambda x, v=vocab: v.get(x, v["__OOV__"])).astype(np.int64)
    encoded = encoded[["clk", "query_id", "price", "item", "user"]]  # label_cols + features[::-1]
    if split == "valid" and blocks:
      (root / "valid").mkdir()
      for b, start in enumerate(range(0, len(encoded), 25)):
        part = encoded.iloc[start : start + 25]
        part.to_parquet(root / "valid" / f"part_{b:05d}.parquet", index=False, engine="pyarrow")
    else:
      encoded.to_parquet(root / f"{split}.parquet", index=False, engine="pyarrow")
  return {"raw": raw, "vocabs": vocabs}


@pytest.fixture
def fuxictr_config(tmp_path, data_config):
  written = write_fuxictr_dataset(tmp_path / "tiny_fuxictr")
  data_config.name = "fuxictr"
  data_config.dir = str(tmp_path / "tiny_fuxictr")
  return data_config, written


def test_loads_with_fuxictrs_vocab_sizes_and_consistent_ids(fuxictr_config):
  config, written = fuxictr_config
  dataset = load_dataset(config, "")
  fm = dataset.feature_map
  assert fm.dataset == "tiny_fuxictr" and fm.names == ["user", "item", "price"]  # meta skipped
  assert [f.kind for f in fm.fields] == [CATEGORICAL, CATEGORICAL, NUMERIC]
  for name in ("user", "item"):
    # Every FuxiCTR id but PAD occurs in train (OOV too: MIN_COUNT folds rare tokens), and
    # mec_jax adds its own OOV id: the vocab size is FuxiCTR's.
    assert fm.fields[fm.index(name)].vocab_size == len(written["vocabs"][name])
  for split in SPLITS:
    check_split(dataset.splits[split], fm, split)
    np.testing.assert_array_equal(dataset.splits[split]["label"], written["raw"][split]["clk"])
  for j, name in enumerate(("user", "item")):
    vocab = written["vocabs"][name]
    fx = {s: written["raw"][s][name].map(lambda x, v=vocab: v.get(x, v["__OOV__"])) for s in SPLITS}
    ours = {s: dataset.splits[s]["ids"][:, j] for s in SPLITS}
    pairs = set(zip(fx["train"], ours["train"], strict=True))
    # One mec_jax id per FuxiCTR id and back (a re-indexing, nothing merged or split).
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    fx_to_ours = dict(pairs)
    for split in ("valid", "test"):  # valid/test ids follow the same map
      np.testing.assert_array_equal(ours[split], [fx_to_ours[a] for a in fx[split]])
    # mec_jax's order: train frequency, most frequent first; train counts for the popularity weights.
    counts = fm.fields[j].counts
    assert (np.diff(counts[:-1]) <= 0).all() and counts.sum() == len(fx["train"])
    np.testing.assert_array_equal(counts, np.bincount(ours["train"], minlength=len(counts)))
  # The token never seen in train is FuxiCTR's OOV, which shares the id of train's rare tokens.
  item_oov = written["vocabs"]["item"]["__OOV__"]
  assert dataset.splits["test"]["ids"][0, 1] == fx_to_ours[item_oov]


def test_numeric_values_go_through_the_numeric_encoding(fuxictr_config):
  config, written = fuxictr_config
  dataset = load_dataset(config, "")
  price = written["raw"]["train"]["price"].to_numpy(np.float64)
  t = np.log1p(price)
  np.testing.assert_allclose(
    dataset.splits["train"]["values"][:, 2], (t - t.mean()) / t.std(), rtol=1e-4, atol=1e-5
  )


def test_bad_directories_are_clear_errors(tmp_path, data_config):
  data_config.name = "fuxictr"
  root = tmp_path / "d"
  write_fuxictr_dataset(root)
  data_config.dir = str(root)
  (root / "test.parquet").unlink()
  with pytest.raises(DataError, match=r"no test split \(test\.parquet or test/\*\.parquet\)"):
    load_dataset(data_config, "")
  feature_map = json.loads((root / "feature_map.json").read_text())
  write_fuxictr_dataset(root2 := tmp_path / "d2")
  data_config.dir = str(root2)
  bad = dict(feature_map)
  bad["features"] = [
    {"user": {"type": "categorical", "vocab_size": 3}},
    *feature_map["features"][1:],
  ]
  (root2 / "feature_map.json").write_text(json.dumps(bad))
  with pytest.raises(
    DataError, match=r"train\.parquet .* column 'user' has id \d+, outside FuxiCTR's \[0, 3\)"
  ):
    load_dataset(data_config, "")
  bad["features"] = [{"hist": {"type": "sequence", "max_len": 5}}, *feature_map["features"]]
  (root2 / "feature_map.json").write_text(json.dumps(bad))
  with pytest.raises(DataError, match=r"feature 'hist' has type 'sequence'"):
    load_dataset(data_config, "")
  (root2 / "feature_map.json").unlink()
  with pytest.raises(DataError, match=r"feature_map\.json: not found"):
    load_dataset(data_config, "")


def test_fuxictr_indexed_tables_are_reindexed_for_stage_b(fuxictr_config, tmp_path):
  """A table indexed by FuxiCTR ids (a FuxiCTR model's, the released MEC code's dumps) lands on
  the rows of the mec_jax ids of the same values."""
  from configs import default
  from mec_jax import external

  data_config, written = fuxictr_config
  config = default.get_config()
  config.data = data_config
  config.model.embed_dim = 4
  config.quantize.min_vocab = 2
  dataset = load_dataset(data_config, "")
  tables = tmp_path / "dumps"
  tables.mkdir()
  rng = np.random.default_rng(1)
  fx_tables = {}
  for name, vocab in written["vocabs"].items():
    fx_tables[name] = rng.normal(size=(len(vocab), 4)).astype(np.float32)
    fx_tables[name][0] = 0.0  # FuxiCTR's PAD row (nn.Embedding padding_idx=0)
    np.save(tables / f"{name}_embedding.npy", fx_tables[name])
  config.pretrain.external_tables = str(tables)
  config.pretrain.external_index = "fuxictr"
  out = tmp_path / "stage_a"
  external.write_stage_a_tables(config, dataset, lambda f: str(out / f"{f}.npz"))
  for j, name in enumerate(("user", "item")):
    vocab = written["vocabs"][name]
    fx = written["raw"]["train"][name].map(lambda x, v=vocab: v.get(x, v["__OOV__"])).to_numpy()
    ours = dataset.splits["train"]["ids"][:, j]
    with np.load(out / f"{name}.npz") as arrays:
      np.testing.assert_array_equal(arrays["embedding"][ours], fx_tables[name][fx])
      np.testing.assert_array_equal(arrays["counts"], dataset.feature_map.fields[j].counts)
      oov = dataset.feature_map.fields[j].oov_id  # mec_jax's OOV row: FuxiCTR's OOV row
      np.testing.assert_array_equal(arrays["embedding"][oov], fx_tables[name][vocab["__OOV__"]])
  config.pretrain.external_index = "dataset"  # FuxiCTR-sized rows, read as mec_jax ids: no
  np.save(tables / "user_embedding.npy", np.zeros((len(written["vocabs"]["user"]) + 1, 4)))
  with pytest.raises(
    DataError, match=r"user_embedding\.npy: embedding of field 'user'.*external_index=fuxictr"
  ):
    external.write_stage_a_tables(config, dataset, lambda f: str(tmp_path / "again" / f"{f}.npz"))


def test_negative_numeric_values_need_bucketize(tmp_path, data_config):
  root = tmp_path / "d"
  write_fuxictr_dataset(root)
  frame = pd.read_parquet(root / "train.parquet")
  frame["price"] = frame["price"] - 2.5  # as after FuxiCTR's StandardScaler
  frame.to_parquet(root / "train.parquet", index=False)
  data_config.name, data_config.dir = "fuxictr", str(root)
  with pytest.raises(DataError, match=r"'price' has negative values .* data\.numeric=bucketize"):
    load_dataset(data_config, "")
  data_config.numeric = "bucketize"
  dataset = load_dataset(data_config, "")
  assert dataset.feature_map.fields[2].kind == CATEGORICAL


def _stage_a_config(data_config, tables_dir):
  from configs import default

  config = default.get_config()
  config.data = data_config
  config.model.embed_dim = 4
  config.quantize.min_vocab = 2
  config.pretrain.external_tables = str(tables_dir)
  return config


def _fuxictr_ids(written, name, split="train"):
  vocab = written["vocabs"][name]
  return written["raw"][split][name].map(lambda x, v=vocab: v.get(x, v["__OOV__"])).to_numpy()


def test_fuxictr_tables_without_the_flag_are_used_in_fuxictr_order_or_refused(
  fuxictr_config, tmp_path
):
  """The vocab sizes coincide (FuxiCTR's OOV id occurs in train): the row count cannot tell the
  orders apart, row 0 (FuxiCTR's PAD, all zeros) does. Never read shifted."""
  from mec_jax import external

  data_config, written = fuxictr_config
  dataset = load_dataset(data_config, "")
  fm = dataset.feature_map
  rng = np.random.default_rng(2)
  fx_dir, ours_dir = tmp_path / "fx", tmp_path / "ours"
  fx_dir.mkdir()
  ours_dir.mkdir()
  fx_tables = {}
  for j, name in enumerate(("user", "item")):
    assert fm.fields[j].vocab_size == len(written["vocabs"][name])  # the sizes coincide
    fx_tables[name] = rng.normal(size=(len(written["vocabs"][name]), 4)).astype(np.float32)
    fx_tables[name][0] = 0.0
    np.save(fx_dir / f"{name}_embedding.npy", fx_tables[name])
    np.save(ours_dir / f"{name}_embedding.npy", rng.normal(size=(fm.fields[j].vocab_size, 4)))
  config = _stage_a_config(data_config, fx_dir)
  assert config.pretrain.external_index == "auto"  # the flag is not given
  out = tmp_path / "stage_a"
  external.write_stage_a_tables(config, dataset, lambda f: str(out / f"{f}.npz"))
  for j, name in enumerate(("user", "item")):  # used in FuxiCTR's order: each value its own row
    ours = dataset.splits["train"]["ids"][:, j]
    with np.load(out / f"{name}.npz") as arrays:
      np.testing.assert_array_equal(
        arrays["embedding"][ours], fx_tables[name][_fuxictr_ids(written, name)]
      )
  # Tables in mec_jax's order on data.name=fuxictr: same row count, row 0 not FuxiCTR's PAD.
  config = _stage_a_config(data_config, ours_dir)
  with pytest.raises(
    DataError, match=r"user_embedding\.npy: .*row 0 not all zeros.*pretrain\.external_index=dataset"
  ):
    external.write_stage_a_tables(config, dataset, lambda f: str(tmp_path / "a2" / f"{f}.npz"))
  config.pretrain.external_index = "dataset"  # said explicitly: read as mec_jax ids
  external.write_stage_a_tables(config, dataset, lambda f: str(tmp_path / "a3" / f"{f}.npz"))
  with np.load(tmp_path / "a3" / "user.npz") as arrays:
    np.testing.assert_allclose(
      arrays["embedding"], np.load(ours_dir / "user_embedding.npy"), rtol=1e-6
    )
  # A recorded order wins over the dataset's default, and is checked too.
  (fx_dir / "id_order.json").write_text(json.dumps({"id_order": "dataset"}))
  config = _stage_a_config(data_config, fx_dir)
  with pytest.raises(
    DataError, match=r"row 0 all zeros, as FuxiCTR's PAD row.*pretrain\.external_index=fuxictr"
  ):
    external.write_stage_a_tables(config, dataset, lambda f: str(tmp_path / "a4" / f"{f}.npz"))
  config.pretrain.external_index = "fuxictr"
  with pytest.raises(DataError, match=r"id_order\.json: the tables are in dataset id order"):
    external.write_stage_a_tables(config, dataset, lambda f: str(tmp_path / "a5" / f"{f}.npz"))


def test_fuxictr_ids_on_another_dataset_are_refused(tmp_path, data_config):
  from configs import smoke
  from mec_jax import external

  config = smoke.get_config()
  config.pretrain.external_tables = str(tmp_path)
  config.pretrain.external_index = "fuxictr"
  with pytest.raises(DataError, match=r"external_index=fuxictr .* needs data\.name=fuxictr"):
    external.resolve_index(config, str(tmp_path))
  config.pretrain.external_index = "auto"
  assert external.resolve_index(config, str(tmp_path)) == ("dataset", True)
