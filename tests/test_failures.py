"""Issue 21's "tracebacks and misleading lines": each bad input or damaged work directory stops
with one error naming the real cause, before any training where it can be known up front (the
command-line side, one line and the log file, is in test_cli_errors.py)."""

import gzip
import os
import shutil

import pytest

from configs import smoke
from mec_jax import pipeline
from mec_jax.errors import ArtifactError, DataError
from mec_jax.train import loop
from tests.data import data_fixtures as fx


def _criteo_config(data_dir):
  config = smoke.get_config()
  config.data.name = "criteo_x1"
  config.data.dir = str(data_dir)
  config.train.batch_size = 64
  config.quantize.allow_nothing_to_compress = True
  return config


@pytest.fixture
def criteo(tmp_path, monkeypatch):
  """A criteo_x1 fixture directory; any training fails the test (every case stops before)."""
  monkeypatch.setattr(loop, "_train", lambda *a, **k: pytest.fail("a stage trained"))
  data = tmp_path / "data"
  data.mkdir()
  fx.write_criteo_x1(data, rows={"train": 400, "valid": 120, "test": 120})
  return data


def _run(data, tmp_path):
  pipeline.run(_criteo_config(data), str(tmp_path / "run"))


def test_a_gzip_file_named_csv_is_called_gzip_compressed(criteo, tmp_path):
  path = criteo / "train.csv"
  path.write_bytes(gzip.compress(path.read_bytes()))
  with pytest.raises(DataError, match=rf"{path}: the file is gzip-compressed, not plain text"):
    _run(criteo, tmp_path)


def test_cr_only_line_ends_are_named(criteo, tmp_path):
  path = criteo / "valid.csv"
  path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
  with pytest.raises(DataError, match=rf"{path}: .*CR-only line ends"):
    _run(criteo, tmp_path)


def test_a_one_class_valid_split_is_refused_before_stage_a(criteo, tmp_path):
  path = criteo / "valid.csv"
  header, *rows = path.read_text().splitlines()
  path.write_text("\n".join([header, *("0" + r[1:] for r in rows)]) + "\n")
  with pytest.raises(
    DataError, match=r"split 'valid' of criteo_x1: all its labels \(120 rows\) are 0"
  ):
    _run(criteo, tmp_path)
  assert not (tmp_path / "run" / "pretrain").exists()


def test_a_one_row_test_split_is_refused_before_stage_a(criteo, tmp_path):
  path = criteo / "test.csv"
  path.write_text("\n".join(path.read_text().splitlines()[:2]) + "\n")
  with pytest.raises(DataError, match=r"split 'test' of criteo_x1: all its labels \(1 rows\)"):
    _run(criteo, tmp_path)
  assert not (tmp_path / "run" / "pretrain").exists()


@pytest.fixture
def finished_copy(finished_quick, tmp_path):
  config, workdir, _ = finished_quick
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  return config, copy


def test_an_empty_result_json_is_named(finished_copy):
  config, workdir = finished_copy
  path = os.path.join(workdir, "pretrain", "result.json")
  open(path, "w").close()
  with pytest.raises(ArtifactError, match=rf"{path}: damaged result of run 'pretrain'.*delete"):
    pipeline.run(config, workdir)


def test_a_deleted_checkpoint_is_called_missing(finished_copy, monkeypatch):
  monkeypatch.setattr(loop, "_train", lambda *a, **k: pytest.fail("a stage trained"))
  config, workdir = finished_copy
  step = loop.load_result(workdir, "pretrain").best_step
  shutil.rmtree(os.path.join(workdir, "pretrain", "checkpoints", str(step)))
  with pytest.raises(ArtifactError) as err:
    pipeline.run(config, workdir)
  text = str(err.value)
  assert f"checkpoint of the finished run's best epoch (step {step}) is missing" in text
  assert "model/optimizer" not in text
