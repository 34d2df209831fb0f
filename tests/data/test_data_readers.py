"""Each reader parses a tiny fixture written in that dataset's real format."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from mec_jax.data import load_dataset, registry
from mec_jax.data.datasets import kuairand
from mec_jax.data.schema import CATEGORICAL, NUMERIC, check_split

SPLITS = ("train", "valid", "test")


def _check(dataset, num_fields):
  assert dataset.feature_map.num_fields == num_fields
  for name, split in dataset.splits.items():
    check_split(split, dataset.feature_map, name)
    assert set(np.unique(split["label"])) <= {0.0, 1.0}


def _criteo_row(rng, label, i_missing=False, c_value=None):
  ints = ["" if i_missing and j % 3 == 0 else str(int(rng.integers(-2, 50))) for j in range(13)]
  cats = [c_value or f"{rng.integers(0, 4):08x}" if j % 5 else "" for j in range(26)]
  return [str(label), *ints, *cats]


def test_criteo_x1_csvs(tmp_path, data_config):
  rng = np.random.default_rng(0)
  header = ",".join(["label", *[f"I{i}" for i in range(1, 14)], *[f"C{i}" for i in range(1, 27)]])
  rows = {"train": 30, "valid": 6, "test": 5}
  for split, n in rows.items():
    lines = [header]
    for r in range(n):
      value = "cafebabe" if split == "test" and r == 0 else None  # never in train
      lines.append(",".join(_criteo_row(rng, r % 2, i_missing=r % 4 == 0, c_value=value)))
    (tmp_path / f"{split}.csv").write_text("\n".join(lines) + "\n")
  data_config.name, data_config.dir = "criteo_x1", str(tmp_path)
  dataset = load_dataset(data_config, "")
  _check(dataset, 39)
  fm = dataset.feature_map
  assert [f.kind for f in fm.fields] == [NUMERIC] * 13 + [CATEGORICAL] * 26
  assert [dataset.num_rows(s) for s in SPLITS] == [30, 6, 5]
  c2 = fm.index("C2")
  assert dataset.splits["test"]["ids"][0, c2] == fm.fields[c2].oov_id
  assert fm.fields[c2].counts.sum() == 30
  # I1 in log mode, against a reference computed from the file.
  frame = pd.read_csv(tmp_path / "train.csv")
  t = np.log1p(np.maximum(frame["I1"].fillna(0).to_numpy(), 0))
  np.testing.assert_allclose(
    dataset.splits["train"]["values"][:, 0], (t - t.mean()) / t.std(), rtol=1e-5
  )


def test_avazu_x1_csvs(tmp_path, data_config):
  rng = np.random.default_rng(1)
  header = ",".join(["label", *[f"feat_{i}" for i in range(1, 23)]])
  for split, n in {"train": 20, "valid": 4, "test": 4}.items():
    body = [",".join([str(r % 2), *[str(rng.integers(0, 5)) for _ in range(22)]]) for r in range(n)]
    (tmp_path / f"{split}.csv").write_text("\n".join([header, *body]) + "\n")
  data_config.name, data_config.dir = "avazu_x1", str(tmp_path)
  dataset = load_dataset(data_config, "")
  _check(dataset, 22)
  assert all(f.kind == CATEGORICAL for f in dataset.feature_map.fields)
  assert dataset.feature_map.names[0] == "feat_1"


def test_criteo_kaggle_tsv_with_random_split(tmp_path, data_config):
  rng = np.random.default_rng(2)
  lines = ["\t".join(_criteo_row(rng, int(r % 3 == 0), i_missing=r % 2 == 0)) for r in range(50)]
  path = tmp_path / "train.txt"
  path.write_text("\n".join(lines) + "\n")
  data_config.name, data_config.dir = "criteo_kaggle", str(tmp_path)
  data_config.split_fractions = (0.6, 0.2, 0.2)
  dataset = load_dataset(data_config, "")
  _check(dataset, 39)
  assert [dataset.num_rows(s) for s in SPLITS] == [30, 10, 10]
  total = sum(float(dataset.splits[s]["label"].sum()) for s in SPLITS)
  assert total == sum(1 for r in range(50) if r % 3 == 0)
  data_config.dir = str(path)  # the file itself works too
  assert load_dataset(data_config, "").num_rows("train") == 30


def test_avazu_kaggle_csv_derives_hour_and_weekday(tmp_path, data_config):
  reader = registry.get_reader("avazu_kaggle")
  header = ["id", "click", "hour", *reader.CATEGORICAL]
  rows = [
    [str(10**18 + r), str(r % 2), "14102100" if r < 5 else "14102513"]
    + [f"{r % 3:x}" for _ in reader.CATEGORICAL]
    for r in range(10)
  ]
  path = tmp_path / "train.csv"
  path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
  data_config.name, data_config.dir = "avazu_kaggle", str(path)
  data_config.split_fractions = (1.0, 0.0, 0.0)
  raw = reader.read(data_config)
  train = raw.splits["train"]
  # 2014-10-21 is a Tuesday (1), 2014-10-25 a Saturday (5).
  assert train["weekday"].tolist() == [1] * 5 + [5] * 5
  assert train["hour_of_day"].tolist() == [0] * 5 + [13] * 5
  assert raw.fields[:2] == ["hour_of_day", "weekday"] and len(raw.fields) == 23
  assert raw.splits["valid"].empty


def _libfm_line(label, indices):
  return " ".join([str(label), *[f"{i}:1" for i in indices]])


def test_frappe_pools_all_files_and_maps_labels(tmp_path, data_config):
  rng = np.random.default_rng(3)
  offsets = np.cumsum([0, 957, 4082, 7, 7, 2, 3, 2, 9, 80])
  written = []
  for name, n in (("train", 20), ("validation", 12), ("test", 8)):
    lines = []
    for _ in range(n):
      label = int(rng.choice([-1, 1]))
      indices = offsets + rng.integers(0, 2, 10)
      written.append((label, indices))
      lines.append(_libfm_line(label, indices))
    (tmp_path / f"frappe.{name}.libfm").write_bytes(("\r\n".join(lines) + "\r\n").encode())
  data_config.name, data_config.dir = "frappe", str(tmp_path)
  dataset = load_dataset(data_config, "")
  _check(dataset, 10)
  assert sum(dataset.num_rows(s) for s in SPLITS) == 40
  assert [dataset.num_rows(s) for s in SPLITS] == [32, 4, 4]
  positives = sum(label == 1 for label, _ in written)
  assert sum(float(dataset.splits[s]["label"].sum()) for s in SPLITS) == positives
  assert dataset.feature_map.names[:2] == ["user", "item"]
  # Without the optional train file, the other two are still read.
  os.remove(tmp_path / "frappe.train.libfm")
  data_config.split_fractions = (0.5, 0.25, 0.25)
  assert load_dataset(data_config, "").num_rows("train") == 10


def test_ipinyou_names_fields_from_featindex_and_slices_valid(tmp_path, data_config):
  names = ["weekday", "hour", "IP"]
  index_lines = [f"{f}:v{j}\t{3 * i + j}" for i, f in enumerate(names) for j in range(3)]
  (tmp_path / "featindex.fm.txt").write_text("\n".join(index_lines) + "\n")
  rng = np.random.default_rng(4)
  for split, n in (("train", 36), ("test", 10)):
    lines = [
      _libfm_line(int(r == 0), [3 * i + rng.integers(0, 3) for i in range(3)]) for r in range(n)
    ]
    (tmp_path / f"{split}.fm.txt").write_text("\n".join(lines) + "\n")
  data_config.name, data_config.dir = "ipinyou", str(tmp_path)
  dataset = load_dataset(data_config, "")
  _check(dataset, 3)
  assert dataset.feature_map.names == names
  assert [dataset.num_rows(s) for s in SPLITS] == [32, 4, 10]  # valid = 1/9 of train


def test_movielens_atomic_files(tmp_path, data_config):
  (tmp_path / "ml-tiny.inter").write_text(
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    + "".join(
      f"{u}\t{i}\t{(u + i) % 5 + 1}\t88125{u}{i}\n" for u in range(1, 6) for i in range(1, 5)
    )
  )
  (tmp_path / "ml-tiny.user").write_text(
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n3\t23\tM\twriter\tT8H1N\n"
    "4\t24\tM\ttechnician\t43537\n"  # user 5 has no row: missing demographics
  )
  (tmp_path / "ml-tiny.item").write_text(
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\t1995\tAction Adventure\n"
    "3\tFour Rooms\t\tThriller\n4\tGet Shorty\t1995\tComedy Drama\n"
  )
  data_config.name, data_config.dir = "movielens", str(tmp_path)
  data_config.split_fractions = (1.0, 0.0, 0.0)
  raw = registry.get_reader("movielens").read(data_config)
  train = raw.splits["train"]
  assert len(train) == 20 and raw.fields == registry.get_reader("movielens").FIELDS
  row = train[(train.user_id == "3") & (train.item_id == "1")].iloc[0]
  assert (row.zip3, row.genre, row.release_year, row.age) == ("T8H", "Animation", "1995", "23")
  assert pd.isna(train[train.user_id == "5"].iloc[0].gender)
  assert pd.isna(train[train.item_id == "3"].iloc[0].release_year)
  expected = [float((u + i) % 5 + 1 >= 4) for u in range(1, 6) for i in range(1, 5)]
  assert train["label"].tolist() == expected


def test_movielens_1m_dat_files(tmp_path, data_config):
  (tmp_path / "ratings.dat").write_text(
    "1::10::5::978300760\n1::20::3::978302109\n2::10::4::97830\n"
  )
  (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
  (tmp_path / "movies.dat").write_bytes(
    "10::Toy Story (1995)::Animation|Children's|Comedy\n20::Caf\xe9 (2000)::Drama\n".encode(
      "latin-1"
    )
  )
  data_config.name, data_config.dir = "movielens", str(tmp_path)
  data_config.split_fractions = (1.0, 0.0, 0.0)
  train = registry.get_reader("movielens").read(data_config).splits["train"]
  assert train["label"].tolist() == [1.0, 0.0, 1.0]
  assert train["genre"].tolist() == ["Animation", "Drama", "Animation"]
  assert train["release_year"].tolist() == ["1995", "2000", "1995"]
  assert train["zip3"].tolist() == ["480", "480", "700"]


@pytest.mark.parametrize("variant", ["pure", "1k", "27k"])
def test_kuairand_variants_join_and_time_split(tmp_path, data_config, variant):
  root = kuairand.write_tiny_kuairand(str(tmp_path / "KuaiRand"), variant=variant, num_rows=600)
  data_config.name, data_config.dir, data_config.variant = "kuairand", root, variant
  dataset = load_dataset(data_config, "")
  _check(dataset, len(kuairand.FIELDS))
  logs = sorted((tmp_path / "KuaiRand" / "data").glob("log_standard_*.csv"))
  assert len(logs) == (4 if variant == "27k" else 2)
  log = pd.concat([pd.read_csv(p) for p in logs])
  by_date = [(log.date <= 20220428).sum(), log.date.between(20220429, 20220503).sum(),
             (log.date > 20220503).sum()]  # fmt: skip
  assert [dataset.num_rows(s) for s in SPLITS] == by_date and min(by_date) > 0
  assert sum(float(dataset.splits[s]["label"].sum()) for s in SPLITS) == log.is_click.sum()


def test_kuairand_features_match_a_pandas_merge(tmp_path, data_config):
  root = kuairand.write_tiny_kuairand(str(tmp_path), num_rows=800, seed=5)
  data_config.name, data_config.dir, data_config.variant = "kuairand", root + "/data", ""
  raw = registry.get_reader("kuairand").read(data_config)  # dir = data/, variant auto-detected
  frame = pd.concat([raw.splits[s] for s in SPLITS], ignore_index=True)
  data = tmp_path / "data"
  log = pd.concat([pd.read_csv(p) for p in sorted(data.glob("log_standard_*_1k.csv"))])
  log = log.sort_values("date", kind="stable").reset_index(drop=True)
  users = pd.read_csv(data / "user_features_1k.csv", dtype=str)
  videos = pd.read_csv(data / "video_features_basic_1k.csv", dtype={"tag": str})
  users["user_id"] = users["user_id"].astype(int)
  ref = log.merge(users, on="user_id", how="left").merge(videos, on="video_id", how="left")
  assert len(frame) == len(ref)
  feedback = {"play_time_ms", "is_like", "long_view", "is_follow", "duration_ms", "time_ms"}
  assert not feedback & set(raw.fields)
  np.testing.assert_array_equal(frame["hour"], ref["hourmin"] // 100)
  for col in ("user_active_degree", "fans_user_num_range", "onehot_feat3"):
    got = frame[col].astype(object).replace("", np.nan)  # empty cell and absent user alike
    np.testing.assert_array_equal(got.fillna("NA"), ref[col].fillna("NA"))
  missing_video = ref["author_id"].isna().to_numpy()
  assert missing_video.any()  # the fixture leaves some logged videos out of the video table
  assert frame["author_id"].isna().to_numpy().tolist() == missing_video.tolist()
  first_tag = ref["tag"].fillna("").str.split(",").str[0]
  got = frame["first_tag"].astype(object)
  np.testing.assert_array_equal(got[~missing_video], first_tag[~missing_video])
  seconds = ref["video_duration"].to_numpy() / 1000
  np.testing.assert_array_equal(frame["duration_bucket"], np.floor(np.log2(1 + seconds)))
  weekday = pd.to_datetime(ref["date"].astype(str), format="%Y%m%d").dt.day_of_week
  np.testing.assert_array_equal(frame["weekday"], weekday)


def test_max_rows_caps_every_file(tmp_path, data_config):
  rng = np.random.default_rng(6)
  header = ",".join(["label", *[f"I{i}" for i in range(1, 14)], *[f"C{i}" for i in range(1, 27)]])
  for split in SPLITS:
    body = [",".join(_criteo_row(rng, r % 2)) for r in range(40)]
    (tmp_path / f"{split}.csv").write_text("\n".join([header, *body]) + "\n")
  data_config.name, data_config.dir, data_config.max_rows = "criteo_x1", str(tmp_path), 7
  dataset = load_dataset(data_config, "")
  assert [dataset.num_rows(s) for s in SPLITS] == [7, 7, 7]
  full = pd.read_csv(tmp_path / "train.csv", nrows=7)
  np.testing.assert_array_equal(dataset.splits["train"]["label"], full["label"])
