"""``compress.method=auto`` (mec_jax/auto.py) end to end on configs/smoke.py with two candidates."""

import json
import os
import shutil

import pytest

from mec_jax import auto, pipeline
from mec_jax import workdir as workdir_lib
from mec_jax.config_checks import validate_config
from mec_jax.configs import smoke
from mec_jax.errors import BudgetError, ConfigError
from mec_jax.experiments import runner
from mec_jax.methods import protocols
from mec_jax.methods.protocols import FROM_SCRATCH
from mec_jax.train import loop

CANDIDATES = ("hash:scratch", "robez")
SEED = 0  # train.seed = quantize.seed = compress.hash_seed, as a grid seed sets them


def auto_config(**compress):
  config = smoke.get_config()
  config.train.epochs = 1
  config.train.seed = SEED
  config.export.full = False
  config.compress.method = "auto"
  config.compress.target_ratio = 4.0
  config.compress.auto_candidates = CANDIDATES
  for key, value in compress.items():
    config.compress[key] = value
  return config


@pytest.fixture
def trained(monkeypatch):
  """The names of the training runs (pretrain, finetune) that actually trained."""
  runs = []
  real = loop._train

  def counting(model, splits, run, *args, **kwargs):
    runs.append(run.name)
    return real(model, splits, run, *args, **kwargs)

  monkeypatch.setattr(loop, "_train", counting)
  return runs


@pytest.fixture(scope="module")
def done(tmp_path_factory):
  """A finished auto run: its work directory and returned report."""
  root = str(tmp_path_factory.mktemp("auto") / "wd")
  return root, pipeline.run(auto_config(), root)


def candidate_report(root, name):
  with open(os.path.join(auto.candidate_dir(root, name), "report.json")) as fh:
    return json.load(fh)


def test_picks_the_best_valid_score_and_reports_the_winner(done):
  root, report = done
  kept = {n: candidate_report(root, n)["compressed"] for n in CANDIDATES}
  score = {n: m["valid_auc"] for n, m in kept.items()}  # compress.auto_monitor
  best = max(score, key=score.get)
  assert report["auto"]["picked"] == best
  assert report["auto"]["monitor"] == "auc"
  for name in CANDIDATES:  # each candidate's row is its own report's kept model
    row = report["auto"]["candidates"][name]
    assert row["valid_auc"] == pytest.approx(kept[name]["valid_auc"], abs=1e-9)
    assert row["test_auc"] == pytest.approx(kept[name]["test_auc"], abs=1e-9)
    only = candidate_report(root, name)["memory"]["compressed_fields_only"]
    assert row["bytes"] == only["compressed_bytes_packed"] <= only["full_bytes"] / 4
  assert report["compressed"]["test_auc"] == pytest.approx(kept[best]["test_auc"], abs=1e-9)
  with open(os.path.join(root, "report.json")) as fh:
    assert json.load(fh)["auto"]["picked"] == best
  with open(os.path.join(root, "auto", "selection.json")) as fh:
    assert json.load(fh)["picked"] == best
  assert "compress.method=auto" in open(os.path.join(root, "report.md")).read()
  assert f"picked {best} of 2 candidates" in pipeline.summarize(report)
  export = os.path.join(root, report["artifacts"]["export"])
  assert export.startswith(auto.candidate_dir(root, best)) and os.path.isdir(export)
  loser = next(n for n in CANDIDATES if n != best)
  assert not os.path.exists(os.path.join(auto.candidate_dir(root, loser), "export"))


def test_report_stage_reads_the_files(done, tmp_path, trained):
  root, report = done
  config = auto_config()
  config.stage = "report"
  config.report_dir = str(tmp_path)
  again = pipeline.run(config, root)
  assert trained == []
  assert again["auto"] == report["auto"]
  assert again["compressed"] == report["compressed"]
  assert (tmp_path / "report.md").exists()


def test_a_candidate_is_the_grid_cell_of_its_method_protocol_and_seed(done, tmp_path):
  """The leaderboard derives the auto row from its cells: a grid cell of the same method,
  protocol and seed over the same stage A computes the same model."""
  root, report = done
  stage_a = str(tmp_path / "stage_a")
  workdir_lib.link_stage(root, stage_a)
  with open(os.path.join(stage_a, "stage_a.json"), "w") as fh:
    json.dump({"seconds": 0.0}, fh)
  overrides = {"compress.method": "hash", "compress.target_ratio": 4.0} | FROM_SCRATCH
  base = auto_config(method="pq")
  cell = runner.run_cell(base, SEED, overrides, str(tmp_path), stage_a)["report"]
  mine = report["auto"]["candidates"]["hash:scratch"]
  assert cell["compressed"]["test_auc"] == pytest.approx(mine["test_auc"], abs=1e-6)
  assert cell["compressed"]["valid_auc"] == pytest.approx(mine["valid_auc"], abs=1e-6)
  assert cell["memory"]["compressed_fields_only"]["compressed_bytes_packed"] == mine["bytes"]


def test_a_rerun_keeps_finished_candidates(done, tmp_path, trained):
  """Delete one candidate's finished files: only that one trains again."""
  root = str(tmp_path / "wd")
  shutil.copytree(done[0], root)
  before = done[1]["auto"]
  redo = next(n for n in CANDIDATES if n != before["picked"])
  kept = os.path.join(auto.candidate_dir(root, before["picked"]), auto.RECORD)
  stamp = os.stat(kept).st_mtime_ns
  os.remove(os.path.join(auto.candidate_dir(root, redo), auto.RECORD))
  shutil.rmtree(os.path.join(auto.candidate_dir(root, redo), "finetune"))
  again = pipeline.run(auto_config(), root)
  assert trained == ["finetune"]  # the deleted candidate's stage C, nothing else
  assert os.stat(kept).st_mtime_ns == stamp
  row, old = again["auto"]["candidates"][redo], before["candidates"][redo]
  assert row["test_auc"] == pytest.approx(old["test_auc"], abs=1e-6)
  assert again["auto"]["picked"] == before["picked"]


def test_export_stage_exports_the_winner_without_training(done, tmp_path, trained):
  root = str(tmp_path / "wd")
  shutil.copytree(done[0], root)
  export = os.path.join(root, done[1]["artifacts"]["export"])
  shutil.rmtree(export)
  config = auto_config()
  config.stage = "export"
  report = pipeline.run(config, root)
  assert trained == []
  assert os.path.isdir(export)
  assert report["auto"]["picked"] == done[1]["auto"]["picked"]


def test_a_finished_candidate_from_other_settings_is_refused(done, tmp_path):
  root = str(tmp_path / "wd")
  shutil.copytree(done[0], root)
  with pytest.raises(
    ConfigError,
    match=r"candidate.json was computed with other settings \(config\.compress\.target_ratio\)",
  ):
    pipeline.run(auto_config(target_ratio=5.0), root)


def test_no_feasible_candidate_is_one_line(done, tmp_path):
  root = str(tmp_path / "wd")
  shutil.copytree(done[0], root)
  config = auto_config(auto_candidates=("qr",), target_ratio=40.0)  # below QR's 2 sqrt(V) floor
  with pytest.raises(BudgetError, match=r"no candidate is feasible \(qr: ") as err:
    pipeline.run(config, root)
  assert "\n" not in str(err.value)
  with open(os.path.join(auto.candidate_dir(root, "qr"), auto.RECORD)) as fh:
    assert "infeasible" in json.load(fh)


@pytest.mark.parametrize(
  "candidates, bad",
  [
    (("pq", "nope"), "'nope'"),
    (("auto",), "'auto'"),
    (("hash:fresh",), "'hash:fresh'"),
    (("hash", "hash"), "'hash' is listed twice"),
    ((), r"\(\)"),
  ],
)
def test_bad_candidates_are_one_line_config_errors(candidates, bad):
  config = auto_config(auto_candidates=candidates)
  with pytest.raises(ConfigError, match=rf"config\.compress\.auto_candidates.*{bad}") as err:
    validate_config(config)
  assert "\n" not in str(err.value)


def test_a_bad_auto_monitor_is_one_line():
  config = auto_config()
  config.compress.auto_monitor = "accuracy"
  with pytest.raises(ConfigError, match=r"config\.compress\.auto_monitor='accuracy'") as err:
    validate_config(config)
  assert "\n" not in str(err.value)


def test_grid_cells_name_their_candidate():
  """`protocols.name_of` inverts `protocols.parse` on a grid cell's overrides."""
  for name in ("pq", "cce", "cce:scratch", "hash:scratch"):
    method, overrides = protocols.parse(name)
    cell = {"compress.method": method, "compress.target_ratio": 25.0} | overrides
    assert protocols.name_of(cell) == name
  assert protocols.name_of({"compress.method": "pq", "quantize.variant": "kmeans"}) is None
  assert protocols.name_of({"compress.method": "hash", "compress.init_tables": "random"}) is None


def test_quantize_stage_is_refused_in_one_line(tmp_path):
  config = auto_config()
  config.stage = "quantize"
  with pytest.raises(ConfigError, match=r"config\.stage='quantize' with compress\.method=auto"):
    pipeline.run(config, str(tmp_path / "wd"))
  assert not (tmp_path / "wd").exists()


def test_candidates_with_the_same_stage_b_compute_it_once(tmp_path):
  """``pq`` and ``pq:scratch`` read the same stage-B settings (`Method.config_keys`): the second
  links the first's ``quantize/`` (same inodes) and still equals its grid cell, whose stage B ran
  on its own; ``hash:scratch`` (another method) computes its own."""
  root = str(tmp_path / "wd")
  config = auto_config(auto_candidates=("pq", "pq:scratch", "hash:scratch"), pq_candidates=2)
  report = pipeline.run(config, root)
  pq, scratch, other = (
    os.path.join(auto.candidate_dir(root, n), "quantize")
    for n in ("pq", "pq:scratch", "hash:scratch")
  )
  shared = sorted(f for f in os.listdir(pq) if f.endswith(".npz"))
  assert shared
  for name in shared:
    assert os.path.samefile(os.path.join(pq, name), os.path.join(scratch, name))
  assert not set(os.listdir(other)) & set(shared)
  with open(os.path.join(auto.candidate_dir(root, "pq:scratch"), workdir_lib.STAGES_FILE)) as fh:
    assert "quantize" in json.load(fh)  # the link carries the stage record: a rerun checks it
  stage_a = str(tmp_path / "stage_a")
  workdir_lib.link_stage(root, stage_a)
  with open(os.path.join(stage_a, "stage_a.json"), "w") as fh:
    json.dump({"seconds": 0.0}, fh)
  overrides = {"compress.method": "pq", "compress.target_ratio": 4.0} | FROM_SCRATCH
  base = auto_config(method="pq", pq_candidates=2)
  cell = runner.run_cell(base, SEED, overrides, str(tmp_path), stage_a)["report"]
  mine = report["auto"]["candidates"]["pq:scratch"]
  assert cell["compressed"]["test_auc"] == pytest.approx(mine["test_auc"], abs=1e-6)
  assert cell["memory"]["compressed_fields_only"]["compressed_bytes_packed"] == mine["bytes"]
  again = pipeline.run(config, root)  # a rerun reads everything back
  assert again["auto"]["picked"] == report["auto"]["picked"]
