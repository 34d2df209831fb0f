"""A work directory knows its data: stages bind to the input files' fingerprint, the encoded-data
cache keys on their content, and old records without a fingerprint stay usable."""

import json
import os
import shutil

import numpy as np
import pytest

from configs import smoke
from mec_jax import pipeline
from mec_jax.data import fingerprint, load_dataset
from mec_jax.errors import ConfigError
from mec_jax.train import loop
from tests.data import data_fixtures as fx


def _criteo_config(data_dir):
  """The smoke config on a small criteo_x1 fixture: stage A only (its fields are too small to
  compress), so a finished run takes seconds."""
  config = smoke.get_config()
  config.data.name = "criteo_x1"
  config.data.dir = str(data_dir)
  config.train.epochs = 1
  config.train.batch_size = 64
  config.model.hidden_units = (8,)
  config.quantize.allow_nothing_to_compress = True
  return config


def _flip_labels(path):
  """Rewrites a criteo_x1 CSV with every label flipped (same size, same vocabulary)."""
  header, *rows = path.read_text().splitlines()
  flipped = [("1" if r[0] == "0" else "0") + r[1:] for r in rows]
  path.write_text("\n".join([header, *flipped]) + "\n")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """``(data_dir, workdir, report)`` of a finished run on the criteo_x1 fixture."""
  root = tmp_path_factory.mktemp("criteo")
  data = root / "data"
  data.mkdir()
  fx.write_criteo_x1(data, rows={"train": 400, "valid": 120, "test": 120})
  workdir = str(root / "run")
  return data, workdir, pipeline.run(_criteo_config(data), workdir)


@pytest.fixture
def copy(finished, tmp_path):
  """A copy of the finished run's data and work directory (same relative layout)."""
  data, workdir, report = finished
  shutil.copytree(data, tmp_path / "data")
  shutil.copytree(workdir, tmp_path / "run")
  stages = tmp_path / "run" / "stages.json"  # the records name the original data.dir
  stages.write_text(stages.read_text().replace(str(data), str(tmp_path / "data")))
  return tmp_path / "data", str(tmp_path / "run"), report


def _forbid_training(monkeypatch):
  monkeypatch.setattr(loop, "_train", lambda *a, **k: pytest.fail("a stage trained"))


def test_flipped_labels_under_a_finished_workdir_are_refused_by_name(copy, monkeypatch):
  data, workdir, _ = copy
  _forbid_training(monkeypatch)
  before = (data / "train.csv").stat().st_size
  _flip_labels(data / "train.csv")
  assert (data / "train.csv").stat().st_size == before  # same size, same vocabulary
  with pytest.raises(ConfigError) as err:
    pipeline.run(_criteo_config(data), workdir)
  text = str(err.value)
  assert f"{workdir} holds stage(s) pretrain computed with other data" in text
  assert f"{data / 'train.csv'} changed content" in text
  assert "valid.csv" not in text
  assert f"delete {workdir}/pretrain to recompute" in text


def test_another_vocabulary_is_refused_before_any_checkpoint_is_read(copy, monkeypatch):
  data, workdir, _ = copy
  _forbid_training(monkeypatch)
  monkeypatch.setattr(loop, "fit", lambda *a, **k: pytest.fail("a checkpoint was restored"))
  text = (data / "train.csv").read_text().replace(",0000000", ",abcdef0")
  (data / "train.csv").write_text(text)
  with pytest.raises(ConfigError, match=r"other data \(.*train.csv changed content"):
    pipeline.run(_criteo_config(data), workdir)
  (data / "extra.csv").write_text("x\n")
  with pytest.raises(ConfigError, match=r"extra.csv is new"):
    pipeline.run(_criteo_config(data), workdir)


def test_another_data_dir_binds_by_content(copy, tmp_path, monkeypatch):
  data, workdir, report = copy
  _forbid_training(monkeypatch)
  moved = tmp_path / "moved"
  shutil.copytree(data, moved)  # same files, other place, new modification times
  again = pipeline.run(_criteo_config(moved), workdir)  # the same data: reused, nothing trained
  assert again["full"] == report["full"]
  other = tmp_path / "other"
  shutil.copytree(data, other)
  _flip_labels(other / "valid.csv")
  with pytest.raises(ConfigError) as err:
    pipeline.run(_criteo_config(other), workdir)
  assert f"data.dir: {str(moved)!r} -> {str(other)!r}" in str(err.value)
  assert f"{other / 'valid.csv'} changed content" in str(err.value)


def test_a_record_without_fingerprint_is_accepted_and_recorded(copy, monkeypatch):
  data, workdir, report = copy
  _forbid_training(monkeypatch)
  stages = os.path.join(workdir, "stages.json")
  with open(stages) as fh:
    records = json.load(fh)
  for record in records.values():
    del record["data.files"]  # written before fingerprints existed
  with open(stages, "w") as fh:
    json.dump(records, fh)
  assert pipeline.run(_criteo_config(data), workdir)["full"] == report["full"]
  with open(stages) as fh:
    recorded = json.load(fh)["pretrain"]["data.files"]
  assert sorted(recorded["files"]) == ["test.csv", "train.csv", "valid.csv"]
  _flip_labels(data / "test.csv")  # from now on the data binds
  with pytest.raises(ConfigError, match=r"test.csv changed content"):
    pipeline.run(_criteo_config(data), workdir)


def test_the_cache_keys_on_the_file_content(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  fx.write_criteo_x1(data)
  config = _criteo_config(data).data
  first = load_dataset(config, str(tmp_path / "cache"))
  labels = np.array(first.splits["train"]["label"])
  _flip_labels(data / "train.csv")
  second = load_dataset(config, str(tmp_path / "cache"))
  assert second.cache_path != first.cache_path
  np.testing.assert_array_equal(second.splits["train"]["label"], 1 - labels)
  (data / "cache").mkdir()  # a cache inside data.dir is no input
  inside = load_dataset(config, str(data / "cache"))
  assert load_dataset(config, str(data / "cache")).cache_path == inside.cache_path


def test_sampled_digest_of_a_large_file(tmp_path, monkeypatch):
  monkeypatch.setattr(fingerprint, "WHOLE_FILE_BYTES", 1000)
  monkeypatch.setattr(fingerprint, "BLOCK_BYTES", 10)
  monkeypatch.setattr(fingerprint, "SAMPLE_BLOCKS", 4)
  path = tmp_path / "big"
  content = bytearray(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
  path.write_bytes(content)
  digest = fingerprint.content_digest(str(path), len(content))
  assert digest.startswith("sampled:")
  for offset, sampled in [(0, True), (2995, True), (1000, True), (500, False)]:
    changed = bytearray(content)
    changed[offset] ^= 1  # blocks at 0, 996, 1993, 2990 (10 bytes each) are read
    path.write_bytes(changed)
    assert (fingerprint.content_digest(str(path), len(changed)) != digest) == sampled, offset
