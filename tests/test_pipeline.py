"""End to end: stages A -> B -> C -> report on the smoke config, reuse and resume of stages."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import kuairand as kuairand_config
from configs import smoke
from mec_jax import model_factory, pipeline
from mec_jax import workdir as workdir_lib
from mec_jax.compression import quantizer
from mec_jax.compression.table import CompressedTable
from mec_jax.data.datasets.kuairand_fixture import write_tiny_kuairand
from mec_jax.train import loop

REPO = Path(__file__).resolve().parents[1]
METRICS = {"test_auc", "test_logloss", "valid_auc", "valid_logloss"}
MEMORY = {
  "full_bytes",
  "compressed_bytes_packed",
  "compressed_bytes_stored",
  "ratio_packed",
  "ratio_stored",
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """One finished smoke run shared by the tests below (they must not modify it)."""
  workdir = str(tmp_path_factory.mktemp("smoke"))
  config = smoke.get_config()
  report = pipeline.run(config, workdir)
  return config, workdir, report


def test_report_follows_the_contract(finished):
  _, workdir, report = finished
  on_disk = json.loads(Path(workdir, "report.json").read_text())
  assert on_disk == json.loads(json.dumps(report))
  assert on_disk["dataset"] == "synthetic" and on_disk["model"] == "deepfm"
  for key in ("full", "compressed", "compressed_finetune", "compressed_swap"):
    assert METRICS <= set(on_disk[key]), key
    assert 0.0 <= on_disk[key]["test_auc"] <= 1.0
  assert on_disk["compressed"]["source"] in ("finetune", "swap")
  mem = on_disk["memory"]
  assert MEMORY <= set(mem) and MEMORY <= set(mem["whole_model"])
  assert MEMORY <= set(mem["compressed_fields_only"])
  assert mem["compressed_bytes_packed"] < mem["full_bytes"]
  assert mem["ratio_packed"] == pytest.approx(mem["full_bytes"] / mem["compressed_bytes_packed"])
  # The compressed fields are the ones at or above min_vocab, with entropies in [0, 1].
  fields = on_disk["compressed_fields"]
  assert set(fields) == {"cat0", "cat1"}
  for f in fields.values():
    assert {"vocab_size", "num_subspaces", "codebook_size", "code_usage_entropy"} <= set(f)
    assert 0.0 <= f["code_usage_entropy"] <= 1.0
  assert set(on_disk["timings"]) >= {"pretrain", "quantize", "finetune"}
  assert "Memory" in Path(workdir, "report.md").read_text()
  for png in ("code_usage.png", "auc_vs_bytes.png"):
    assert Path(workdir, png).stat().st_size > 1000


def test_compressed_choice_is_the_better_validation_score(finished):
  _, _, report = finished
  score = lambda m: m["valid_auc"] - m["valid_logloss"]
  best = max(("finetune", "swap"), key=lambda k: score(report[f"compressed_{k}"]))
  assert report["compressed"]["source"] == best


def test_artifacts_are_consistent(finished):
  config, workdir, _ = finished
  table = CompressedTable.load(os.path.join(workdir, "quantize", "cat0.npz"))
  pretrained = np.load(os.path.join(workdir, "pretrain", "tables", "cat0.npz"))
  assert table.codes.dtype == np.uint8
  assert table.codes.shape == (pretrained["embedding"].shape[0], config.quantize.num_subspaces)
  assert table.first_order is not None  # DeepFM has first-order weights: compressed too
  # Codebooks live in the table's space: reconstruction beats the all-zero table by far.
  err = np.mean((table.reconstruct() - pretrained["embedding"]) ** 2)
  assert err < 0.5 * np.mean(pretrained["embedding"] ** 2)


def test_rerun_does_no_work_twice(finished, monkeypatch, tmp_path):
  config, workdir, report = finished
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)

  def forbidden(*args, **kwargs):
    raise AssertionError("a finished stage ran again")

  monkeypatch.setattr(quantizer, "quantize_table", forbidden)
  monkeypatch.setattr(loop, "_train", forbidden)
  again = pipeline.run(config, copy)
  for key in ("full", "compressed_finetune", "compressed_swap"):
    assert again[key] == pytest.approx(report[key])


def test_deleting_finetune_reruns_only_finetune(finished, monkeypatch, tmp_path):
  config, workdir, report = finished
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  shutil.rmtree(os.path.join(copy, "finetune"))
  runs = []
  real_train = loop._train

  def counting_train(model, splits, run, *args, **kwargs):
    runs.append(run.name)
    return real_train(model, splits, run, *args, **kwargs)

  monkeypatch.setattr(quantizer, "quantize_table", lambda *a, **k: pytest.fail("quantize reran"))
  monkeypatch.setattr(loop, "_train", counting_train)
  again = pipeline.run(config, copy)
  assert runs == ["finetune"]
  assert again["full"] == pytest.approx(report["full"])
  assert METRICS <= set(again["compressed_finetune"])


def test_single_stages_in_order(tmp_path):
  config = smoke.get_config()
  config.train.epochs = 1
  workdir = str(tmp_path)
  with pytest.raises(ValueError, match="stage=quantize"):
    pipeline.load_compressed(config, _dataset(config, workdir), workdir_lib.Workdir(workdir))
  config.stage = "pretrain"
  report = pipeline.run(config, workdir)
  assert report["full"] and "compressed" not in report
  assert os.path.exists(os.path.join(workdir, "pretrain", "tables", "cat0.npz"))
  config.stage = "quantize"
  report = pipeline.run(config, workdir)
  assert set(report["compressed_fields"]) == {"cat0", "cat1"}
  assert not os.path.exists(os.path.join(workdir, "finetune"))


def _dataset(config, workdir):
  from mec_jax.data import load_dataset

  return load_dataset(config.data, os.path.join(workdir, "cache"))


def test_model_agnostic_stage_c(tmp_path):
  """Stage A's backbone and stage C's differ: no swap-in, finetune only."""
  config = smoke.get_config()
  config.train.epochs = 1
  config.pretrain.model = "fm"
  config.model.name = "dcnv2"
  report = pipeline.run(config, str(tmp_path))
  assert "compressed_swap" not in report
  assert report["compressed"]["source"] == "finetune"
  assert report["model"] == "dcnv2" and report["pretrain_model"] == "fm"


def test_kuairand_directory_end_to_end(tmp_path):
  root = write_tiny_kuairand(str(tmp_path / "KuaiRand-1K"), variant="1k", num_rows=3000)
  config = kuairand_config.get_config()
  small = smoke.get_config()
  for section in ("model", "train", "quantize"):
    config[section].update(small[section].to_dict())
  config.data.dir = root
  config.quantize.min_vocab = 100
  config.train.epochs = 1  # 39 fields: compiling dominates, one epoch shows the path works
  report = pipeline.run(config, str(tmp_path / "run"))
  assert report["dataset"] == "kuairand"
  assert report["compressed_fields"], "some KuaiRand id field should be compressed"
  assert METRICS <= set(report["compressed"])


@pytest.mark.parametrize(
  "key, value, match",
  [
    ("stage", "train", "config.stage"),
    ("model.name", "resnet", "config.model.name"),
    ("quantize.variant", "pq", "config.quantize.variant"),
    ("quantize.num_subspaces", 3, "must divide"),
    ("quantize.codebook_size", 1, "codebook_size"),
  ],
)
def test_bad_config_is_a_clear_error(tmp_path, key, value, match):
  config = smoke.get_config()
  section, _, leaf = key.rpartition(".")
  (config[section] if section else config)[leaf] = value
  with pytest.raises(ValueError, match=match):
    pipeline.run(config, str(tmp_path))


def test_cli_reports_bad_input_without_traceback(tmp_path):
  missing = tmp_path / "nowhere"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "mec_jax.main",
      f"--config={REPO / 'configs' / 'frappe.py'}",
      f"--config.data.dir={missing}",
      f"--workdir={tmp_path / 'run'}",
    ],
    capture_output=True,
    text=True,
    cwd=tmp_path,
    env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)},
    timeout=300,
  )
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert str(missing) in proc.stderr


def test_changed_settings_on_finished_stages_are_a_clear_error(finished, tmp_path):
  config, workdir, _ = finished
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  changed = smoke.get_config()
  changed.quantize.codebook_size = 8
  with pytest.raises(ValueError, match=r"quantize\.codebook_size: 16 -> 8.*delete"):
    pipeline.run(changed, copy)
  # A new stage C backbone reuses stages A and B: only finetune/ is stale.
  changed = smoke.get_config()
  changed.model.name = "pnn"
  with pytest.raises(
    ValueError, match=r"stage\(s\) finetune computed with other settings \(config\.model\.name"
  ):
    pipeline.run(changed, copy)
  # Cosmetic keys never invalidate anything.
  changed = smoke.get_config()
  changed.train.log_every_steps = 7
  workdir_lib.check_and_record(changed, copy)


def test_copy_matching_params_takes_batch_norm_statistics():
  config = smoke.get_config()
  config.model.batch_norm = True
  from flax import nnx

  from mec_jax.layers.embed import Embed

  def model(seed):
    tables = [Embed(v, 8, rngs=nnx.Rngs(seed)) for v in (5, 7)]
    return model_factory.build_model("deepfm", tables, config, seed)

  source, target = model(0), model(1)
  stats = nnx.state(source, nnx.BatchStat)
  assert nnx.to_flat_state(stats), "the model should have batch-norm statistics"
  for _, var in nnx.to_flat_state(stats):
    var[...] = var[...] + 3.0
  nnx.update(source, stats)
  copied = model_factory.copy_matching_params(source, target)
  assert copied > 0
  for (path, a), (_, b) in zip(
    nnx.to_flat_state(nnx.state(source, nnx.BatchStat)),
    nnx.to_flat_state(nnx.state(target, nnx.BatchStat)),
    strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]), err_msg=str(path))


def test_finetuned_tables_and_export_are_the_kept_model(finished, tmp_path):
  from mec_jax import export
  from mec_jax.layers import CodebookEmbed

  config, workdir, report = finished
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  wd = workdir_lib.Workdir(copy)
  dataset = _dataset(config, copy)
  assert report["artifacts"] == {"finetuned_tables": "finetune/tables", "export": "export"}
  assert "finetune/tables/" in Path(copy, "report.md").read_text()
  # Rebuild the kept model from the finished run's checkpoints (restores, trains nothing).
  pretrained, _ = pipeline.run_pretrain(config, dataset, wd)
  compressed = pipeline.load_compressed(config, dataset, wd)
  finetuned, _ = pipeline.run_finetune(config, dataset, wd, pretrained, compressed)
  source = report["compressed"]["source"]
  kept = pipeline.kept_model(config, dataset, pretrained, compressed, finetuned, source)
  for name, table in zip(dataset.feature_map.names, kept.embedding.tables, strict=True):
    if not isinstance(table, CodebookEmbed):
      assert not os.path.exists(wd.finetuned(name))
      continue
    on_disk = CompressedTable.load(wd.finetuned(name))
    np.testing.assert_array_equal(on_disk.codes, np.asarray(table.codes[...]))
    np.testing.assert_array_equal(on_disk.codebooks, np.asarray(table.codebooks[...]))
    np.testing.assert_array_equal(on_disk.first_order, np.asarray(table.first_order_codebook[...]))
    assert on_disk.stats["source"] == source
  # The exported programs give the in-memory logits on a batch size they never saw.
  test = dataset.splits["test"]
  ids, values = np.asarray(test["ids"][:77]), np.asarray(test["values"][:77])
  kept.eval()
  pretrained.eval()
  for directory, model in ((wd.export, kept), (os.path.join(wd.export, "full"), pretrained)):
    served = export.load(directory)
    np.testing.assert_allclose(served(ids, values), model(ids, values), rtol=1e-5, atol=1e-5)
  assert export.read_manifest(wd.export)["meta"]["source"] == source


def test_export_stage_on_a_finished_run_only_exports(finished, monkeypatch, tmp_path):
  config, workdir, report = finished
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  shutil.rmtree(os.path.join(copy, "export"))
  shutil.rmtree(os.path.join(copy, "finetune", "tables"))
  monkeypatch.setattr(quantizer, "quantize_table", lambda *a, **k: pytest.fail("quantize reran"))
  monkeypatch.setattr(loop, "_train", lambda *a, **k: pytest.fail("a stage trained again"))
  config = config.copy_and_resolve_references()
  config.stage = "export"
  again = pipeline.run(config, copy)
  assert again["compressed"] == pytest.approx(report["compressed"])
  for path in ("export/manifest.json", "export/full/params.npz", "finetune/tables/cat0.npz"):
    assert os.path.exists(os.path.join(copy, path)), path


def test_export_stage_without_a_finished_run_is_a_clear_error(finished, tmp_path):
  config, workdir, _ = finished
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  shutil.rmtree(os.path.join(copy, "finetune"))
  config = config.copy_and_resolve_references()
  config.finetune.swap_in = False
  config.stage = "export"
  with pytest.raises(ValueError, match="no finished stage C to export"):
    pipeline.run(config, copy)


def test_external_tables_stand_in_for_stage_a(finished, tmp_path):
  """Stage A's own tables, handed back as external files, give stage B the same tables."""
  config, workdir, _ = finished
  external = tmp_path / "external"
  external.mkdir()
  with np.load(os.path.join(workdir, "pretrain", "tables", "cat0.npz")) as arrays:
    np.savez(external / "cat0.npz", **arrays)  # embedding, bias, counts
  with np.load(os.path.join(workdir, "pretrain", "tables", "cat1.npz")) as arrays:
    np.save(external / "cat1_embedding.npy", arrays["embedding"])  # the released code's dumps
    np.save(external / "cat1_counts.npy", arrays["counts"])
  config = smoke.get_config()
  config.pretrain.external_tables = str(external)
  config.data.cache_dir = os.path.join(workdir, "cache")
  config.train.epochs = 1
  run = tmp_path / "run"
  report = pipeline.run(config, str(run))
  for field in ("cat0", "cat1"):
    ours = CompressedTable.load(str(run / "quantize" / f"{field}.npz"))
    theirs = CompressedTable.load(os.path.join(workdir, "quantize", f"{field}.npz"))
    np.testing.assert_array_equal(ours.codes, theirs.codes)
    np.testing.assert_allclose(ours.codebooks, theirs.codebooks, rtol=1e-5, atol=1e-6)
  assert ours.first_order is None  # the .npy dump has no bias: no first-order codebook
  assert report["full"] is None and "compressed_swap" not in report
  assert report["compressed"]["source"] == "finetune"
  assert (run / "export" / "manifest.json").exists() and not (run / "export" / "full").exists()


def test_export_stage_on_an_empty_workdir_trains_nothing(monkeypatch, tmp_path):
  monkeypatch.setattr(loop, "_train", lambda *a, **k: pytest.fail("stage=export trained"))
  config = smoke.get_config()
  config.stage = "export"
  # Preflight stops first: stage A and B outputs are absent (without stage C only: the test above).
  with pytest.raises(ValueError, match=r"stage='export' needs the output of stage\(s\) pretrain"):
    pipeline.run(config, str(tmp_path))
