"""Workdir hygiene: a failed run records nothing, settings bind only stages with outputs, a single
stage never runs the ones before it, and ``stage=report`` only reads."""

import errno
import json
import os
import shutil
import tempfile

import pytest

from mec_jax import pipeline
from mec_jax import workdir as workdir_lib
from mec_jax.errors import ConfigError, DataError
from mec_jax.train import loop
from tests.conftest import quick_config


class Reached(Exception):
  """Raised by a patched stage A: the run got past every check."""


def _snapshot(root):
  return {
    os.path.join(d, f): (
      os.stat(os.path.join(d, f)).st_size,
      os.stat(os.path.join(d, f)).st_mtime_ns,
    )
    for d, _, files in os.walk(root)
    for f in files
  }


def _forbid_training(monkeypatch):
  monkeypatch.setattr(loop, "_train", lambda *a, **k: pytest.fail("a stage trained"))


def test_failed_first_run_leaves_a_workdir_the_corrected_command_accepts(tmp_path, monkeypatch):
  bad = quick_config()
  bad.data.split_fractions = (0.9, 0.1, 0.0)
  bad.train.learning_rate = 0.5  # also a stage-A setting that differs from the corrected run
  with pytest.raises(DataError, match="split 'test' of synthetic is empty"):
    pipeline.run(bad, str(tmp_path))
  for name in ("stages.json", "config.json", "pretrain", "quantize", "swap", "finetune"):
    assert not os.path.exists(tmp_path / name), name

  def reached(config, dataset, wd):
    raise Reached

  monkeypatch.setattr(pipeline, "run_pretrain", reached)
  with pytest.raises(Reached):
    pipeline.run(quick_config(), str(tmp_path))


def test_settings_bind_only_stages_with_outputs(tmp_path):
  root = str(tmp_path)
  first, second = quick_config(), quick_config()
  second.train.learning_rate = 0.5
  workdir_lib.record(first, root, "pretrain")  # a stage that started and wrote nothing
  workdir_lib.check(second, root)
  os.makedirs(tmp_path / "pretrain" / "checkpoints" / "5")  # a killed stage A's checkpoint
  with pytest.raises(
    ConfigError, match=r"stage\(s\) pretrain .*train.learning_rate: 0.001 -> 0.5"
  ) as err:
    workdir_lib.check(second, root)
  assert f"delete {root}/pretrain to recompute" in str(err.value)


def test_workdir_that_is_a_file_or_read_only(tmp_path, monkeypatch):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(ConfigError, match=rf"--workdir={path} is a file; expected a directory"):
    pipeline.run(quick_config(), str(path))

  def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))

  monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
  with pytest.raises(ConfigError, match=r"cannot be written \(Read-only file system\)"):
    workdir_lib.check_workdir(str(tmp_path / "new"), writable=True)
  with pytest.raises(ConfigError, match=r"does not exist; nothing to report"):
    workdir_lib.check_workdir(str(tmp_path / "absent"), writable=False)


def test_single_stage_never_runs_the_stages_before_it(finished_quick, tmp_path, monkeypatch):
  _forbid_training(monkeypatch)
  config = quick_config()
  config.stage = "finetune"
  with pytest.raises(
    ConfigError,
    match=r"stage='finetune' needs the output of stage\(s\) pretrain, "
    r"quantize.*run --config.stage=pretrain first",
  ):
    pipeline.run(config, str(tmp_path / "fresh"))
  assert not os.path.exists(tmp_path / "fresh" / "pretrain")
  _, workdir, _ = finished_quick
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  shutil.rmtree(os.path.join(copy, "quantize"))
  with pytest.raises(
    ConfigError, match=r"needs the output of stage\(s\) quantize.*cat0.npz is miss"
  ):
    pipeline.run(config, copy)


def test_report_on_a_read_only_workdir_writes_nothing(finished_quick, tmp_path, monkeypatch):
  _, workdir, report = finished_quick
  _forbid_training(monkeypatch)
  monkeypatch.setattr(pipeline.loop, "fit", lambda *a, **k: pytest.fail("report read a checkpoint"))
  monkeypatch.setattr(workdir_lib, "is_writable", lambda directory: False)
  config = quick_config()
  config.stage = "report"
  before = _snapshot(workdir)
  again = pipeline.run(config, workdir)
  assert _snapshot(workdir) == before
  for key in ("full", "compressed", "compressed_swap", "compressed_finetune", "memory"):
    assert again[key] == report[key], key
  config.report_dir = str(tmp_path / "elsewhere")
  pipeline.run(config, workdir)
  assert _snapshot(workdir) == before
  assert {"report.json", "report.md", "code_usage.png"} <= set(os.listdir(config.report_dir))


def test_keys_missing_from_an_older_record_are_not_changes(tmp_path):
  root = str(tmp_path)
  config = quick_config()
  workdir_lib.record(config, root, "pretrain")
  os.makedirs(tmp_path / "pretrain" / "checkpoints" / "5")
  stored = os.path.join(root, "stages.json")
  with open(stored) as fh:
    records = json.load(fh)
  del records["pretrain"]["train.sparse_optimizer"]  # written before that key existed
  with open(stored, "w") as fh:
    json.dump(records, fh)
  workdir_lib.check(config, root)  # the older workdir is still usable
  config.train.learning_rate = 0.5  # a recorded key that changed still binds
  with pytest.raises(ConfigError, match=r"train.learning_rate: 0.001 -> 0.5"):
    workdir_lib.check(config, root)


@pytest.mark.parametrize(
  "key, new_value",
  [
    ("train.sparse_min_rows", 20_000),
    ("quantize.selection", "balance"),
    ("compress.qr_large_index", "remainder"),
    ("compress.pq_candidates", 4),
  ],
)
def test_a_key_added_with_a_new_behaviour_binds_at_its_old_value(tmp_path, key, new_value):
  """A record from before ``key`` existed ran as ``BEHAVIOUR_BEFORE_KEY[key]``, not the default."""
  root = str(tmp_path)
  config = quick_config()
  section, name = key.split(".")
  old_value = workdir_lib.BEHAVIOUR_BEFORE_KEY[key]
  stage = "pretrain" if section == "train" else "quantize"
  artifact = "pretrain/checkpoints/5" if stage == "pretrain" else "quantize"
  config[section][name] = old_value
  workdir_lib.record(config, root, stage)
  os.makedirs(tmp_path / artifact)
  if stage == "quantize":
    (tmp_path / "quantize" / "cat0.npz").write_bytes(b"")
  stored = os.path.join(root, "stages.json")
  with open(stored) as fh:
    records = json.load(fh)
  del records[stage][key]  # written before the key existed
  with open(stored, "w") as fh:
    json.dump(records, fh)
  workdir_lib.check(config, root)  # the old behaviour, asked for explicitly: reusable
  config[section][name] = new_value
  with pytest.raises(ConfigError, match=rf"config.{key}: {old_value!r} -> {new_value!r}"):
    workdir_lib.check(config, root)


def test_workdir_layout_names_every_artifact(tmp_path):
  from mec_jax import methods

  wd = workdir_lib.Workdir(str(tmp_path))
  root = str(tmp_path)
  assert wd.table("cat 0/x") == os.path.join(root, "pretrain", "tables", "cat_0_x.npz")
  assert wd.compressed("cat0") == os.path.join(root, "quantize", "cat0.npz")
  assert wd.artifact(methods.get("pq"), "cat0") == wd.compressed("cat0")
  assert wd.artifact(methods.get("hash"), "cat0") == os.path.join(root, "quantize", "cat0.hash.npz")
  assert wd.finetuned("cat0") == os.path.join(root, "finetune", "tables", "cat0.npz")
  assert wd.swap == os.path.join(root, "swap", "result.json")
  assert wd.stages == os.path.join(root, "stages.json")
  assert os.path.dirname(wd.export_staging) == root


def test_a_pq_workdir_binds_only_the_compress_keys_pq_reads(finished_quick, tmp_path, monkeypatch):
  """A key only QR reads changes: the finished PQ run is reused as it is; a key PQ's stages read
  (``compress.target_ratio``, ``quantize.*``) changes: refused, naming it."""
  _, workdir, report = finished_quick
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  _forbid_training(monkeypatch)
  config = quick_config()
  config.compress.qr_random_init = "dlrm" if config.compress.qr_random_init != "dlrm" else "ones"
  config.compress.hash_function = "mod" if config.compress.hash_function != "mod" else "universal"
  again = pipeline.run(config, copy)
  assert again["compressed"]["test_auc"] == pytest.approx(report["compressed"]["test_auc"])
  with open(os.path.join(copy, "stages.json")) as fh:
    recorded = json.load(fh)["quantize"]
  assert {k for k in recorded if k.startswith("compress.")} == {
    "compress.method",
    "compress.target_ratio",
    "compress.pq_candidates",
    "compress.unread_keys",
  }
  assert "compress.qr_large_index" in recorded["compress.unread_keys"]
  # Unread keys are not compared even by a caller that does not name the method's keys (nor at
  # their BEHAVIOUR_BEFORE_KEY value: qr_large_index is at "remainder", not "quotient").
  workdir_lib.check(config, copy)
  for section, key, value in (("compress", "target_ratio", 3.0), ("quantize", "codebook_size", 8)):
    changed = quick_config()
    changed[section][key] = value
    with pytest.raises(
      ConfigError, match=rf"stage\(s\) quantize, finetune .*config.{section}.{key}"
    ):
      pipeline.run(changed, copy)


def test_a_record_with_every_compress_key_binds_the_methods_keys_only(tmp_path):
  """A record written before methods declared their keys holds every ``compress.*`` key: it is
  still accepted when a key the method does not read changed, and refused when one it reads did."""
  from mec_jax import methods

  root = str(tmp_path)
  config = quick_config()
  config.compress.method = "hash"
  workdir_lib.record(config, root, "quantize")  # compress_keys=None: the old record, every key
  (tmp_path / "quantize").mkdir()
  (tmp_path / "quantize" / "cat0.hash.npz").write_bytes(b"")
  with open(tmp_path / "stages.json") as fh:
    assert "compress.qr_combine" in json.load(fh)["quantize"]
  keys = methods.get("hash").config_keys
  config.compress.qr_combine = "sum"  # QR only
  config.compress.cce_columns = 2  # CCE only
  workdir_lib.check(config, root, compress_keys=keys)
  with pytest.raises(ConfigError, match=r"compress.qr_combine: 'mult' -> 'sum'"):
    workdir_lib.check(config, root)  # every key binds when the method's keys are not given
  config.compress.hash_function = "mod"  # hash reads it
  with pytest.raises(ConfigError, match=r"compress.hash_function: 'universal' -> 'mod'"):
    workdir_lib.check(config, root, compress_keys=keys)
