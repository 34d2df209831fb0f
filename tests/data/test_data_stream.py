"""Streamed encoding: the cache it writes is byte-identical to the in-memory encoder's and to the
files the pre-streaming reader wrote for the same fixtures.

``golden_cache.json`` holds, for the files as written at commit 0c3424a (before the streamed reader
and the numeric-only ``values``): the SHA-256 of the integer and label files and of the train
counts (bytes whose values and order are fixed); for the JSON files (``encoding.json`` holds
float64 means/stds) the SHA-256 of the document with its floats taken out, and the floats;
for the float32 values of the numeric fields (columns of the old dense ``values.npy``) the shape,
NaN mask and per-column sums of x, x² and i·x. Floats are compared with a tolerance: numpy's AVX2
and AVX-512 code paths round the last bits of a mean differently, so a hash of them passes on
one machine only. (The float fingerprints were derived on an AVX2 machine from files whose hashes
matched 0c3424a's, except ``encoding.json`` of the three criteo cases with log-normalized numeric
fields, whose float64 means/stds are where the two machines' bytes differ.)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import data_fixtures as fx
import numpy as np
import pytest

from mec_jax.data import (
  cache,
  cache_document,
  encode_raw,
  load_dataset,
  registry,
  streamed,
  text_lines,
)
from mec_jax.data.values import FieldValues

GOLDEN = json.loads((Path(__file__).parent / "golden_cache.json").read_text())
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _cases(tmp: Path):
  for name in ("criteo_x1", "avazu_x1", "criteo_kaggle"):
    (tmp / name).mkdir()
  fx.write_criteo_x1(tmp / "criteo_x1")
  fx.write_avazu_x1(tmp / "avazu_x1")
  fx.write_criteo_kaggle(tmp / "criteo_kaggle")
  criteo_2k = str(SHARED / "criteo_sample" / "criteo_sample_2k.txt")
  return {
    "criteo_x1": dict(name="criteo_x1", dir=str(tmp / "criteo_x1")),
    "criteo_x1_bucketize": dict(
      name="criteo_x1", dir=str(tmp / "criteo_x1"), numeric="bucketize", num_buckets=4
    ),
    "avazu_x1": dict(name="avazu_x1", dir=str(tmp / "avazu_x1")),
    "criteo_kaggle_tsv": dict(
      name="criteo_kaggle", dir=str(tmp / "criteo_kaggle"), split_fractions=(0.6, 0.2, 0.2)
    ),
    "criteo_sample_2k": dict(name="criteo_kaggle", dir=criteo_2k, min_count=2),
    "criteo_sample_2k_bucketize": dict(name="criteo_kaggle", dir=criteo_2k, numeric="bucketize"),
    "avazu_sample": dict(
      name="avazu_kaggle", dir=str(SHARED / "avazu_sample" / "avazu_sample.csv")
    ),
  }


def _sha(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _config(data_config, overrides):
  for key, value in overrides.items():
    data_config[key] = value
  return data_config


@pytest.fixture
def small_chunks(monkeypatch):
  """Chunks of ~300 bytes and remap blocks of 7 rows, so every fixture spans many of each."""
  monkeypatch.setattr(text_lines, "CHUNK_BYTES", 300)
  monkeypatch.setattr(streamed, "_REMAP_ROWS", 7)


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_streamed_cache_matches_todays_files(case, tmp_path, data_config, small_chunks):
  overrides = _cases(tmp_path)[case]
  if not os.path.exists(overrides["dir"]):
    pytest.skip(f"{overrides['dir']} not present")
  dataset = load_dataset(_config(data_config, overrides), str(tmp_path / "cache"))
  got = _fingerprints(dataset)
  want = GOLDEN[case]
  assert sorted(got) == sorted(want)
  for name, expected in want.items():
    if isinstance(expected, str):
      assert got[name] == expected, name
    else:
      assert {k: v for k, v in got[name].items() if not isinstance(v, list) or k == "shape"} == {
        k: v for k, v in expected.items() if not isinstance(v, list) or k == "shape"
      }, name
      for key in ("floats", "sum", "sum_sq", "ramp"):
        if key in expected:
          # float64 stats: last bits; float32 values summed: their rounding (sums of |x| ~ 1e3)
          tol = dict(rtol=1e-12, atol=1e-14) if key == "floats" else dict(rtol=1e-6, atol=1e-4)
          np.testing.assert_allclose(got[name][key], expected[key], err_msg=name, **tol)


def _json_fingerprint(text: str) -> dict:
  """SHA-256 of a JSON document with its floats replaced by a marker, and the floats in order."""
  floats = []

  def strip(x):
    if isinstance(x, float):
      floats.append(x)
      return "<float>"
    if isinstance(x, dict):
      return {k: strip(v) for k, v in x.items()}
    if isinstance(x, list):
      return [strip(v) for v in x]
    return x

  structure = json.dumps(strip(json.loads(text)))
  return {"sha256_without_floats": _sha(structure.encode()), "floats": floats}


def _float_array_fingerprint(x: np.ndarray) -> dict:
  """Shape, NaN mask hash and per-column sums of x, x² and i·x (i = row / rows) of ``[rows, cols]``."""
  x64 = np.nan_to_num(x.astype(np.float64))
  ramp = np.arange(1, len(x) + 1) / max(len(x), 1)
  return {
    "shape": list(x.shape),
    "nan_sha256": _sha(np.isnan(x).tobytes()),
    "sum": x64.sum(0).tolist(),
    "sum_sq": (x64**2).sum(0).tolist(),
    "ramp": (ramp @ x64).tolist(),
  }


def _fingerprints(dataset) -> dict:
  entry = dataset.cache_path
  got = {}
  for split in ("train", "valid", "test"):
    for name in ("ids", "label"):
      got[f"{split}_{name}.npy"] = _sha(Path(entry, f"{split}_{name}.npy").read_bytes())
    got[f"{split}_numeric"] = _float_array_fingerprint(np.load(Path(entry, f"{split}_numeric.npy")))
  for name in ("encoding.json", "feature_map.json"):
    got[name] = _json_fingerprint(Path(entry, name).read_text())
  fields = dataset.feature_map.fields
  got["counts"] = _sha(b"".join(np.asarray(f.counts, np.int64).tobytes() for f in fields))
  return got


@pytest.mark.parametrize("case", ["criteo_x1", "criteo_x1_bucketize", "criteo_kaggle_tsv"])
def test_streamed_and_in_memory_entries_are_byte_identical(
  case, tmp_path, data_config, small_chunks
):
  config = _config(data_config, _cases(tmp_path)[case])
  streamed_entry = load_dataset(config, str(tmp_path / "streamed")).cache_path
  reference = encode_raw(registry.get_reader(config.name).read(config), config)
  memory_entry = str(tmp_path / "memory")
  cache.save_entry(
    memory_entry, cache_document(config), reference.splits, reference.feature_map, reference.stats
  )
  names = sorted(f for f in os.listdir(streamed_entry) if f != "counts.npz")  # zip has mtimes
  assert names == sorted(f for f in os.listdir(memory_entry) if f != "counts.npz")
  for name in names:
    assert Path(streamed_entry, name).read_bytes() == Path(memory_entry, name).read_bytes(), name
  # The same without a cache: arrays come back in memory, equal to the cached ones.
  uncached = load_dataset(config, "")
  for split, arrays in uncached.splits.items():
    assert not isinstance(arrays["ids"], np.memmap)
    np.testing.assert_array_equal(arrays["ids"], reference.splits[split]["ids"])
    np.testing.assert_array_equal(arrays["values"], reference.splits[split]["values"])


def test_npy_appender_writes_what_np_save_writes(tmp_path):
  rng = np.random.default_rng(0)
  array = rng.integers(0, 1000, (1234, 39)).astype(np.int32)
  writer = streamed._NpyAppender(str(tmp_path / "a.npy"), np.int32, 39)
  for start in range(0, len(array), 100):
    writer.append(array[start : start + 100])
  writer.close()
  expected = io.BytesIO()
  np.save(expected, array)
  assert (tmp_path / "a.npy").read_bytes() == expected.getvalue()


def test_field_values_index_like_the_dense_array():
  rng = np.random.default_rng(1)
  dense = np.ones((20, 5), np.float32)
  dense[:, [1, 3]] = rng.normal(size=(20, 2))
  values = FieldValues(np.ascontiguousarray(dense[:, [1, 3]]), [1, 3], 5)
  assert values.shape == (20, 5) and len(values) == 20 and values.nbytes == 20 * 2 * 4
  rows = np.array([7, 0, 19, 7])
  np.testing.assert_array_equal(values[rows], dense[rows])
  np.testing.assert_array_equal(values[:, 3], dense[:, 3])
  np.testing.assert_array_equal(values[2:5, 1:4], dense[2:5, 1:4])
  np.testing.assert_array_equal(np.asarray(values), dense)
  with pytest.raises(ValueError, match=r"columns \[3, 1\] must increase"):
    FieldValues(np.zeros((2, 2), np.float32), [3, 1], 5)


def test_chunks_of_many_parse_blocks_match_too(tmp_path, data_config, monkeypatch):
  # One 16 MiB chunk, parsed by pyarrow in 256-byte blocks, each with its own dictionary.
  from mec_jax.data.datasets import delimited

  monkeypatch.setattr(delimited, "_BLOCK_SIZE", 256)
  config = _config(data_config, _cases(tmp_path)["criteo_x1"])
  entry = load_dataset(config, str(tmp_path / "cache")).cache_path
  for split in ("train", "valid", "test"):
    got = _sha(Path(entry, f"{split}_ids.npy").read_bytes())
    assert got == GOLDEN["criteo_x1"][f"{split}_ids.npy"]
