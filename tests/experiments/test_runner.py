"""The grid runner end to end on configs/sweeps/smoke.py: every method through the pipeline."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mec_jax import pipeline
from mec_jax.errors import ArtifactError, BudgetError, ConfigError, DataError
from mec_jax.experiments import runner, summary
from mec_jax.train import loop

REPO = Path(__file__).resolve().parents[2]
SWEEP = str(REPO / "configs" / "sweeps" / "smoke.py")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
  """One seed of the smoke sweep, counting which training runs happened."""
  root = tmp_path_factory.mktemp("grid")
  runs = []
  real = loop._train

  def counting(model, splits, run, *args, **kwargs):
    runs.append(run.name)
    return real(model, splits, run, *args, **kwargs)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(loop, "_train", counting)
    records = runner.run_grid(SWEEP, str(root), seeds=[0])
  return root, records, runs


def test_every_method_runs_and_reports_its_bytes(grid):
  root, records, runs = grid
  assert runs.count("pretrain") == 1  # stage A once per seed, shared by the cells
  by_cell = {r["cell"]: r for r in records}
  assert set(by_cell) == {"pq-r4", "hash-r4", "qr-r4", "qr-r40", "int8", "int4"}
  assert "QR needs at least" in by_cell["qr-r40"]["infeasible"]
  dim = 8
  for name, rec in by_cell.items():
    if name == "qr-r40":
      continue
    report = rec["report"]
    fields = report["compressed_fields"]
    assert set(fields) == {"cat0", "cat1"}
    method = rec["overrides"]["compress.method"]
    assert {f["method"] for f in fields.values()} == {method}
    only = report["memory"]["compressed_fields_only"]
    if method == "hash":
      want = sum(f["num_buckets"] for f in fields.values()) * dim * 4
    elif method == "qr":
      want = sum(f["num_collisions"] + f["quotient_rows"] for f in fields.values()) * dim * 4
    elif method in ("int8", "int4"):
      bits = int(method[3:])
      want = sum(f["vocab_size"] * (dim * bits // 8 + 4) for f in fields.values())
    else:
      want = None
    if want is not None:
      assert only["compressed_bytes_packed"] == want, name
    if "r4" in name:  # a budget of 4x: at most full / 4 bytes
      assert only["compressed_bytes_packed"] <= only["full_bytes"] / 4
    assert 0.0 < report["compressed"]["test_auc"] <= 1.0


def test_tables_and_plot_are_written(grid):
  root, _, _ = grid
  with open(root / "results.csv") as fh:
    rows = list(csv.DictReader(fh))
  labels = {(r["label"], float(r["target_ratio"])) for r in rows}
  assert ("hash", 4.0) in labels and ("full (stage A)", 1.0) in labels
  text = (root / "results.md").read_text()
  assert "| qr | 40x | 0 | infeasible" in text
  assert (root / "auc_vs_bytes.png").stat().st_size > 5000


def test_a_finished_grid_is_not_rerun(grid, monkeypatch):
  root, records, _ = grid
  monkeypatch.setattr(pipeline, "run", lambda *a, **k: pytest.fail("a finished cell ran again"))
  again = runner.run_grid(SWEEP, str(root), seeds=[0])
  assert [r["cell"] for r in again] == [r["cell"] for r in records]


@pytest.mark.parametrize("method", ["pq", "hash"])
def test_swap_in_only_cells_report_the_swap_in(grid, tmp_path, monkeypatch, method):
  """``FINETUNE = False``: stage B, then the report of stage-A weights with the method's tables;
  stage C never trains."""
  root, _, _ = grid
  config, _, _, _ = runner.load_sweep(SWEEP)
  stage_a = str(Path(root) / "stage_a" / "seed0")
  trained = []
  real = loop._train
  monkeypatch.setattr(loop, "_train", lambda *a, **k: trained.append(a[4]) or real(*a, **k))
  overrides = {"compress.method": method, "compress.target_ratio": 4.0}
  record = runner.run_cell(config, 0, overrides, str(tmp_path), stage_a, finetune=False)
  assert "finetune" not in trained
  report = record["report"]
  assert report["compressed"]["source"] == "swap"
  assert 0.5 < report["compressed"]["test_auc"] <= 1.0
  only = report["memory"]["compressed_fields_only"]
  assert 0 < only["compressed_bytes_packed"] <= only["full_bytes"] / 4
  assert {f["method"] for f in report["compressed_fields"].values()} == {method}


def test_budget_errors_are_infeasible_and_other_errors_failed_then_retried(
  grid, tmp_path, monkeypatch
):
  """A `BudgetError` is final (infeasible); any other error is recorded as failed, and the next
  run of the cell retries it: a success replaces the record, which is then read back."""
  root, _, _ = grid
  config, _, _, _ = runner.load_sweep(SWEEP)
  stage_a = str(Path(root) / "stage_a" / "seed0")
  done = tmp_path / "cells" / "hash-r9" / "seed0" / "cell.json"
  overrides = {"compress.method": "hash", "compress.target_ratio": 9.0}

  def stale(*args, **kwargs):
    raise ArtifactError("quantize/cat0.hash.npz is damaged;\n delete it")

  monkeypatch.setattr(pipeline, "run", stale)
  record = runner.run_cell(config, 0, overrides, str(tmp_path), stage_a, finetune=False)
  assert record["failed"] == "quantize/cat0.hash.npz is damaged; delete it"  # one line
  assert json.loads(done.read_text())["failed"] == record["failed"]
  assert runner.failures([record]).startswith("1 failed: hash-r9 seed 0")

  def bug(*args, **kwargs):
    raise RuntimeError("a bug")

  monkeypatch.setattr(pipeline, "run", bug)
  record = runner.run_cell(config, 0, overrides, str(tmp_path), stage_a, finetune=False)
  assert record["failed"].startswith("RuntimeError: a bug (traceback: ")
  log = record["failed"].split("(traceback: ")[1].rstrip(")")
  assert "Traceback" in Path(log).read_text() and "a bug" in Path(log).read_text()

  def over_budget(*args, **kwargs):
    raise BudgetError("config.compress.target_ratio: a budget of 3 bytes is below ...")

  monkeypatch.setattr(pipeline, "run", over_budget)
  record = runner.run_cell(config, 0, overrides, str(tmp_path), stage_a, finetune=False)
  assert record["infeasible"].startswith("config.compress.target_ratio: a budget of 3 bytes")
  assert "failed" not in json.loads(done.read_text())
  monkeypatch.setattr(pipeline, "run", lambda *a, **k: pytest.fail("a finished cell ran again"))
  assert runner.run_cell(config, 0, overrides, str(tmp_path), stage_a, finetune=False) == record
  assert runner.failures([record]) == ""


def test_a_failing_stage_a_skips_its_seed_only(grid, monkeypatch):
  root, records, _ = grid
  real = runner.run_stage_a

  def stage_a(config, seed, root):
    if seed == 1:
      raise DataError("data/train.csv, line 3: 2 fields, expected 5")
    return real(config, seed, root)

  monkeypatch.setattr(runner, "run_stage_a", stage_a)
  monkeypatch.setattr(pipeline, "run", lambda *a, **k: pytest.fail("a cell of seed 1 ran"))
  again = runner.run_grid(SWEEP, str(root), seeds=[0, 1])
  assert [r["cell"] for r in again] == [r["cell"] for r in records] + ["stage_a"]
  assert again[-1]["failed"] == "data/train.csv, line 3: 2 fields, expected 5"
  assert runner.failures(again).startswith("1 failed: stage_a seed 1 ")


BAD_SWEEP = """
from configs import smoke

SEEDS = [0]
FINETUNE = False
SWEEP = [
  {"compress.method": "hash", "compress.target_ratio": 4.0, "compress.no_such_key": 1},
  {"compress.method": "int4"},
]


def get_config():
  config = smoke.get_config()
  config.train.epochs = 1
  return config
"""


def test_a_failing_cell_does_not_stop_the_grid_and_the_cli_names_it(grid, tmp_path):
  """A cell whose override names no config key fails alone; the cells after it run; the table
  shows it failed; the command line reruns it (it fails again) and exits 1 naming it."""
  root, _, _ = grid
  sweep = tmp_path / "configs" / "sweeps" / "bad.py"
  sweep.parent.mkdir(parents=True)
  sweep.write_text(BAD_SWEEP)
  out = tmp_path / "grid"
  for shared in ("stage_a", "cache"):  # the grid's stage A of seed 0, reused
    shutil.copytree(Path(root) / shared, out / shared)
  records = runner.run_grid(str(sweep), str(out), seeds=[0])
  by_cell = {r["cell"]: r for r in records}
  bad = "hash-no_such_key=1-r4"
  assert list(by_cell) == [bad, "int4"]
  assert "compress.no_such_key" in by_cell[bad]["failed"]
  assert 0.5 < by_cell["int4"]["report"]["compressed"]["test_auc"] <= 1.0
  assert (
    "| hash (no_such_key=1) | 4x | 0 | failed: sweep override" in (out / "results.md").read_text()
  )
  before = (out / "cells" / bad / "seed0" / "cell.json").stat().st_mtime_ns
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  cli = subprocess.run(
    [sys.executable, "-m", "mec_jax.experiments", f"--config={sweep}", f"--workdir={out}"],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert cli.returncode == 1, cli.stderr
  assert f"error: 1 failed: {bad} seed 0" in cli.stderr
  assert "| int4 |" in cli.stdout  # the table still prints
  assert (out / "cells" / bad / "seed0" / "cell.json").stat().st_mtime_ns > before  # retried


def test_summary_mean_and_std_over_seeds():
  def record(seed, auc):
    report = {
      "full": {"test_auc": 0.7, "test_logloss": 0.5},
      "compressed": {"test_auc": auc, "test_logloss": 0.4, "source": "swap"},
      "memory": {
        "ratio_packed": 5.0,
        "compressed_fields_only": {
          "compressed_bytes_packed": 100,
          "ratio_packed": 10.0,
          "full_bytes": 1000,
        },
      },
    }
    over = {"compress.method": "hash", "compress.target_ratio": 10.0}
    return {"seed": seed, "overrides": over, "report": report, "seconds": 1.0}

  failed = {"seed": 3, "overrides": record(0, 0.6)["overrides"], "failed": "a damaged file"}
  records = [record(0, 0.6), record(1, 0.8), record(2, 0.7), failed]
  table = summary.aggregate(summary.raw_rows(records))
  (row,) = [r for r in table if r["label"] == "hash"]
  assert row["seeds"] == 3 and row["test_auc"] == pytest.approx(0.7)
  assert row["test_auc_std"] == pytest.approx(0.1)
  assert row["failed"] == 1 and not row["note"]  # three seeds ran: the mean stands, one failed
  assert "| hash | 10x | 3 (+1 failed) | 0.7000 ± 0.1000 |" in summary.to_markdown(table, "t")
  assert json.dumps(table)  # plain values


def test_bad_override_is_a_clear_error():
  from configs import smoke

  with pytest.raises(ValueError, match="compress.bucket"):
    runner.seeded(smoke.get_config(), 0, "/tmp", {"compress.bucket": 3})


def test_overrides_take_the_type_of_the_default():
  from configs import smoke

  config = runner.seeded(
    smoke.get_config(),
    0,
    "/tmp",
    {"finetune.init_from_pretrain": "False", "train.epochs": 2.0, "compress.target_ratio": 3},
  )
  assert config.finetune.init_from_pretrain is False
  assert config.train.epochs == 2 and isinstance(config.train.epochs, int)
  assert isinstance(config.compress.target_ratio, float)
  with pytest.raises(ConfigError, match="init_from_pretrain"):
    runner.seeded(smoke.get_config(), 0, "/tmp", {"finetune.init_from_pretrain": "no"})


def test_a_finished_cell_from_other_settings_is_refused(grid, tmp_path):
  """A changed sweep base (or default) that a finished cell's method reads makes its record
  stale: one line naming the setting. A key the method does not read leaves it standing."""
  root, _, _ = grid
  copy = tmp_path / "grid"
  shutil.copytree(root, copy)
  config, _, _, _ = runner.load_sweep(SWEEP)
  config.compress.pq_candidates += 1  # read by pq, not by hash
  stage_a = str(copy / "stage_a" / "seed0")
  pq = {"compress.method": "pq", "compress.target_ratio": 4.0}
  with pytest.raises(ConfigError, match=r"cell\.json was computed with other settings") as err:
    runner.run_cell(config, 0, pq, str(copy), stage_a)
  assert "config.compress.pq_candidates: 4 -> 5" in str(err.value)
  assert "\n" not in str(err.value)
  hash_cell = {"compress.method": "hash", "compress.target_ratio": 4.0}
  assert "report" in runner.run_cell(config, 0, hash_cell, str(copy), stage_a)


def test_pq_from_scratch_links_the_warm_cells_stage_b(grid, tmp_path):
  """PQ's stage B reads no protocol key: the from-scratch cell links the finished warm cell's
  ``quantize/`` (same inodes) and computes what it computes with a stage B of its own."""
  from mec_jax.methods.protocols import FROM_SCRATCH

  root, _, _ = grid
  copy = tmp_path / "grid"
  shutil.copytree(root, copy, copy_function=os.link)
  config, _, _, _ = runner.load_sweep(SWEEP)
  stage_a = str(copy / "stage_a" / "seed0")
  scratch = {"compress.method": "pq", "compress.target_ratio": 4.0} | FROM_SCRATCH
  linked = runner.run_cell(config, 0, scratch, str(copy), stage_a)["report"]
  warm_b = copy / "cells" / "pq-r4" / "seed0" / "quantize"
  mine_b = copy / "cells" / runner.cell_name(scratch) / "seed0" / "quantize"
  files = sorted(p.name for p in warm_b.glob("*.npz"))
  assert files and all(os.path.samefile(warm_b / f, mine_b / f) for f in files)
  alone = runner.run_cell(config, 0, scratch, str(tmp_path / "alone"), stage_a)["report"]
  assert linked["compressed"]["test_auc"] == pytest.approx(
    alone["compressed"]["test_auc"], abs=1e-6
  )
  alone_b = tmp_path / "alone" / "cells" / runner.cell_name(scratch) / "seed0" / "quantize"
  for name in files:  # the same codes (integers), so the same compressed tables
    with np.load(mine_b / name) as a, np.load(alone_b / name) as b:
      np.testing.assert_array_equal(a["codes"], b["codes"])
