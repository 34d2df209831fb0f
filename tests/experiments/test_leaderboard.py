"""bench/leaderboard.py on a fake results CSV: mean ± std, the bold winner, "not run" cells."""

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from configs.sweeps import FIXED_RATIO, FROM_SCRATCH, leaderboard_sweep
from mec_jax.methods import registry

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def board():
  spec = importlib.util.spec_from_file_location("leaderboard", REPO / "bench" / "leaderboard.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


FAKE = [  # method, protocol, target_ratio, seed, test_auc, bytes, note
  ("full", "stage A", 1.0, 0, 0.790, 1000, ""),
  ("full", "stage A", 1.0, 1, 0.786, 1000, ""),
  ("pq", "warm", 25.0, 0, 0.781, 40, ""),
  ("pq", "warm", 25.0, 1, 0.785, 40, ""),
  ("hash", "scratch", 25.0, 0, 0.7901, 40, ""),
  ("hash", "scratch", 25.0, 1, 0.7899, 40, ""),
  ("qr", "warm", 25.0, 0, None, None, "infeasible: QR needs at least 62 rows"),
  ("int8", "warm", 0.0, 0, 0.789, 280, ""),
]


def write_fake(path: Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", newline="") as fh:
    writer = csv.writer(fh)
    writer.writerow(["method", "protocol", "target_ratio", "seed", "test_auc", "bytes", "note"])
    for row in FAKE:
      writer.writerow(["" if v is None else v for v in row])


def test_aggregate_is_mean_and_sample_std_over_seeds(board, tmp_path):
  write_fake(tmp_path / "raw.csv")
  table = board.aggregate(board.read_raw(str(tmp_path / "raw.csv")))
  pq = table[("pq", "warm", 25.0)]
  assert pq["n"] == 2
  assert pq["test_auc"] == pytest.approx(np.mean([0.781, 0.785]))
  assert pq["test_auc_std"] == pytest.approx(np.std([0.781, 0.785], ddof=1))
  assert table[("qr", "warm", 25.0)]["n"] == 0
  assert table[("qr", "warm", 25.0)]["note"].startswith("infeasible")
  assert np.isnan(table[("int8", "warm", 0.0)]["test_auc_std"])  # one seed: no std


def test_page_bolds_the_winner_and_shows_cells_not_run(board, tmp_path, monkeypatch):
  write_fake(tmp_path / "movielens" / "results_raw.csv")
  monkeypatch.setattr(board, "OUT", str(tmp_path))
  monkeypatch.setattr(board, "PAGE", str(tmp_path / "leaderboard.md"))
  monkeypatch.setattr(board, "DATASETS", ("movielens",))
  board.page()
  text = (tmp_path / "leaderboard.md").read_text()
  matrix = {}  # the first table's rows by "| method protocol"
  for line in text.splitlines():
    if line.startswith("| ") and line.count(" | ") > 2:
      matrix.setdefault(" ".join(line.split(" | ")[:2]), line)
  assert "**0.7900 ± 0.0001** (n=2)" in matrix["| hash scratch"]  # best at 25x, bold
  assert "**" not in matrix["| pq warm"] and "0.7830 ± 0.0028 (n=2)" in matrix["| pq warm"]
  assert "infeasible" in matrix["| qr warm"]
  assert "not run" in matrix["| cce scratch"]  # in the sweep file, no result: never invented
  assert "Of the single methods, `hash` (scratch)" in text
  assert (tmp_path / "movielens" / "auc_vs_bytes.png").stat().st_size > 0
  with open(tmp_path / "movielens" / "summary.csv") as fh:
    assert len(list(csv.DictReader(fh))) == 5  # full, pq, hash, qr, int8


def test_raw_rows_read_bytes_and_stage_times_from_the_report(board):
  report = {
    "memory": {
      "compressed_fields_only": {
        "compressed_bytes_packed": 40,
        "ratio_packed": 25.0,
        "full_bytes": 1000,
      },
      "ratio_packed": 20.0,
    },
    "timings": {"quantize": 3.0, "finetune": 7.0},
    "compressed": {"test_auc": 0.78, "test_logloss": 0.4, "source": "finetune"},
    "full": {"test_auc": 0.79, "test_logloss": 0.39},
  }
  rec = {"overrides": {"compress.method": "hash", "compress.target_ratio": 25.0} | FROM_SCRATCH}
  rows = board.raw_rows(
    [rec | {"seed": 0, "report": report, "stage_a_seconds": 11.0, "seconds": 9.0}]
  )
  assert rows[0]["protocol"] == "scratch"
  assert (rows[0]["bytes"], rows[0]["stage_b_s"], rows[0]["stage_c_s"]) == (40, 3.0, 7.0)
  assert (rows[1]["method"], rows[1]["bytes"], rows[1]["stage_a_s"]) == ("full", 1000, 11.0)


def test_sweep_has_every_registered_method_warm_and_from_scratch():
  cells = leaderboard_sweep([10.0, 25.0])
  for method in registry.names():
    mine = [c for c in cells if c["compress.method"] == method]
    budgets = 1 if method in FIXED_RATIO else 2
    assert len(mine) == 2 * budgets
    assert sum(c.get("finetune.init_from_pretrain") is False for c in mine) == budgets


def _row(method, protocol, seed, test_auc, valid_auc, valid_logloss, ratio=25.0, note=""):
  return {
    "method": method, "protocol": protocol, "target_ratio": ratio, "seed": seed,
    "test_auc": test_auc, "valid_auc": valid_auc, "valid_logloss": valid_logloss,
    "bytes": 40.0, "stage_b_s": 1.0, "stage_c_s": 2.0, "kept": "finetune", "note": note,
  }  # fmt: skip


def test_auto_row_is_the_candidate_with_the_best_validation_score(board):
  from mec_jax.train.metrics import monitor_score

  candidates = [("pq", "warm"), ("hash", "scratch"), ("qr", "scratch")]
  rows = [
    _row("pq", "warm", 0, 0.780, 0.79, 0.45),
    _row("hash", "scratch", 0, 0.785, 0.78, 0.40),  # lower AUC, much lower logloss
    _row("qr", "scratch", 0, None, None, None, note="infeasible: floor"),  # skipped, as auto does
    _row("pq", "warm", 1, 0.781, 0.79, 0.45),  # seed 1: hash missing -> no auto row
    _row("cce", "warm", 0, 0.9, 0.99, 0.1),  # not a candidate
  ]
  out = board.auto_rows(rows, candidates, "auc_minus_logloss")
  assert len(out) == 1 and out[0]["seed"] == 0
  scores = {r["method"]: monitor_score({"auc": r["valid_auc"], "logloss": r["valid_logloss"]},
                                       "auc_minus_logloss") for r in rows[:2]}  # fmt: skip
  best = max(scores, key=scores.get)
  assert out[0]["kept"].startswith(best)
  assert out[0]["test_auc"] == {"pq": 0.780, "hash": 0.785}[best]
  assert (out[0]["method"], out[0]["protocol"]) == board.AUTO
  assert out[0]["stage_c_s"] == pytest.approx(3 * 2.0)  # every candidate's time
  by_auc = board.auto_rows(rows, candidates, "auc")
  assert by_auc[0]["kept"] == "pq warm"  # valid AUC 0.79 > 0.78
  every = board.auto_rows(rows, candidates, "auc", board.AUTO_ALL)
  assert (every[0]["method"], every[0]["protocol"]) == board.AUTO_ALL


def test_auto_row_counts_a_shared_stage_b_once_and_ties_go_to_the_first_candidate(board):
  """``pq`` and ``pq:scratch`` share stage B in `mec_jax.auto` (PQ's stage B reads no protocol
  key); ``hash:scratch`` reads ``compress.init_tables``, so hash warm and scratch do not."""
  assert board.stage_b_key("pq", "warm") == board.stage_b_key("pq", "scratch")
  assert board.stage_b_key("hash", "warm") != board.stage_b_key("hash", "scratch")
  candidates = [("pq", "warm"), ("pq", "scratch"), ("hash", "scratch")]
  rows = [
    _row("hash", "scratch", 0, 0.70, 0.77, 0.45),
    _row("pq", "scratch", 0, 0.78, 0.79, 0.45),  # ties pq warm on validation
    _row("pq", "warm", 0, 0.78, 0.79, 0.45),
  ]
  (out,) = board.auto_rows(rows, candidates, "auc")
  assert out["kept"] == "pq warm"  # the earlier candidate, as auto.pick breaks ties
  assert out["stage_b_s"] == pytest.approx(2 * 1.0)  # pq's and hash's; pq:scratch links pq's
  assert out["stage_c_s"] == pytest.approx(3 * 2.0)


def test_auto_candidates_parse_the_protocol(board):
  from ml_collections import ConfigDict

  config = ConfigDict({"compress": {"auto_candidates": ("pq", "cce:scratch")}})
  assert board.auto_candidates(config) == [("pq", "warm"), ("cce", "scratch")]


def test_a_failed_cell_shows_as_failed(board):
  """`collect` turns a failed cell record into a row whose page cell reads "failed"."""
  over = {"compress.method": "hash", "compress.target_ratio": 25.0}
  failed = {"cell": "hash-r25", "seed": 0, "overrides": over, "failed": "sweep override 'x'"}
  rows = board.raw_rows([failed])
  assert [r["note"] for r in rows] == ["failed: sweep override 'x'"]
  cell = board.aggregate(rows)[("hash", "warm", 25.0)]
  assert cell["n"] == 0
  assert board._auc(cell, False) == "failed"


def test_the_recommendation_compares_auto_with_the_method_lines(board):
  """auto is judged against the best method line, not against the derived "every line" row; the
  tolerance is that line's seed std, or auto's own when the line ran one seed."""

  def cell(method, protocol, ratio, auc, std, n):
    return {"method": method, "protocol": protocol, "target_ratio": ratio, "n": n,
            "test_auc": auc, "test_auc_std": std, "by_seed": dict.fromkeys(range(n), auc)}  # fmt: skip

  nan = float("nan")
  table = {
    ("full", "stage A", 1.0): cell("full", "stage A", 1.0, 0.790, 0.001, 3),
    (*board.AUTO, 10.0): cell(*board.AUTO, 10.0, 0.7881, 0.0015, 3),
    (*board.AUTO_ALL, 10.0): cell(*board.AUTO_ALL, 10.0, 0.7894, nan, 1),  # not a line
    ("qr", "scratch", 10.0): cell("qr", "scratch", 10.0, 0.7888, 0.0010, 3),  # within its std
    (*board.AUTO, 50.0): cell(*board.AUTO, 50.0, 0.7843, 0.0019, 3),
    ("pq_head", "warm", 50.0): cell("pq_head", "warm", 50.0, 0.7855, nan, 1),  # auto's std
    (*board.AUTO, 100.0): cell(*board.AUTO, 100.0, 0.7689, 0.0027, 3),
    ("pq", "scratch", 100.0): cell("pq", "scratch", 100.0, 0.7760, 0.0021, 3),  # 0.0071 > 0.0021
  }
  text = board.recommendation({"d": table})
  assert "in 2 of 3" in text
  assert "not in d 100x (0.7689 vs pq scratch 0.7760)" in text
  assert "10x (" not in text and "50x (" not in text
  assert "d 50x -0.0057, d 100x -0.0211" in text

  one_seed = {  # one seed each: a miss with no std is said to be one
    ("full", "stage A", 1.0): cell("full", "stage A", 1.0, 0.83224, nan, 1),
    (*board.AUTO, 25.0): cell(*board.AUTO, 25.0, 0.83223, nan, 1),
    ("qr", "warm", 25.0): cell("qr", "warm", 25.0, 0.83229, nan, 1),
  }
  text = board.recommendation({"e": one_seed})
  assert "not in e 25x (0.8322 vs qr warm 0.8323; one seed each, no std)" in text
  assert "e 25x -0.00001" in text

  three_equal = {
    key: row | {"n": 3, "test_auc_std": 0.0, "by_seed": dict.fromkeys(range(3), row["test_auc"])}
    for key, row in one_seed.items()
  }
  text = board.recommendation({"e": three_equal})  # a std of 0 is a std: no such remark
  assert "not in e 25x (0.8322 vs qr warm 0.8323)" in text


def test_the_gap_to_the_full_model_is_paired_over_common_seeds(board):
  """A second seed of the full model (a better stage-A run) does not move the gap of a cell
  that ran the first seed only: the gap is each seed's difference, over the seeds both ran."""
  rows = [
    ("full", "stage A", 1.0, "2024", 0.8322),
    ("full", "stage A", 1.0, "2025", 0.8325),  # its mean, 0.83235, is not what auto ran against
    ("auto", "by valid", 25.0, "2024", 0.8321),
    ("pq", "warm", 25.0, "2024", 0.8321),
  ]
  table = board.aggregate(
    [
      {"method": m, "protocol": p, "target_ratio": r, "seed": s, "test_auc": a, "note": ""}
      | dict.fromkeys(("test_logloss", "bytes", "ratio", "stage_a_s", "stage_b_s", "stage_c_s"))
      for m, p, r, s, a in rows
    ]
  )
  assert board.paired_gap(table["auto", "by valid", 25.0], table["full", "stage A", 1.0]) == (
    pytest.approx(-0.0001),
    1,
  )
  text = board.recommendation({"e": table})
  assert "e 25x -0.0001 (1 of the full model's 2 seeds)" in text


def test_run_candidates_auto_selects_the_cells_of_the_auto_row(board, monkeypatch, tmp_path):
  """``--candidates=auto`` runs exactly the cells of the dataset's ``compress.auto_candidates``
  at the budgets asked (warm and from-scratch cells told apart by their overrides)."""
  from mec_jax.experiments import runner
  from mec_jax.methods import protocols

  seen = {}

  def fake_grid(path, root, *, only=None, seeds=None, lock=None):
    seen["cells"] = [o for o in runner.load_sweep(path)[2] if only(o)]
    return []

  monkeypatch.setattr(runner, "run_grid", fake_grid)
  monkeypatch.setattr(board, "collect", lambda *a: None)
  monkeypatch.setattr(board, "page", lambda: None)
  board.run("movielens", str(tmp_path), [25.0], [2024], candidates=["auto"])
  config, _ = board.load_sweep("movielens")
  names = [protocols.name_of(o) for o in seen["cells"]]
  assert sorted(names) == sorted(config.compress.auto_candidates)
  assert {o["compress.target_ratio"] for o in seen["cells"]} == {25.0}
  board.run("movielens", str(tmp_path), [10.0, 50.0], [2024], candidates=["hash:scratch"])
  assert [protocols.name_of(o) for o in seen["cells"]] == ["hash:scratch", "hash:scratch"]


def test_collect_merges_a_partial_grid_into_the_kept_rows(board, tmp_path, monkeypatch):
  """A grid holding some cells replaces those cells' rows (same cell and seed) and keeps the
  rest: a fresh grid root must not drop the committed results."""
  from mec_jax.experiments import runner

  write_fake(tmp_path / "movielens" / "results_raw.csv")
  monkeypatch.setattr(board, "OUT", str(tmp_path))
  over = {"compress.method": "hash", "compress.target_ratio": 25.0}
  scratch = over | {"finetune.init_from_pretrain": False}
  records = [  # hash scratch seed 1 rerun, pq seed 0 failed on rerun; hash warm seed 2 is new
    {"cell": "a", "seed": 1, "overrides": scratch, "infeasible": "boom"},
    {"cell": "b", "seed": 2, "overrides": over, "failed": "bang"},
    {"cell": "c", "seed": 0, "overrides": {"compress.target_ratio": 25.0}, "failed": "crash"},
  ]
  path = tmp_path / "movielens" / "results_raw.csv"
  grid: list[dict] = []
  monkeypatch.setattr(runner, "records_on_disk", lambda root: grid)
  board.collect("movielens", "unused")  # an empty grid: every row kept (in the full columns)
  before = path.read_text().splitlines()
  assert len(before) == len(FAKE) + 1
  grid.extend(records)
  board.collect("movielens", "unused")
  after = path.read_text().splitlines()
  (old,) = [i for i, line in enumerate(before) if line.startswith("hash,scratch,25.0,1,")]
  assert after[:old] + after[old + 1 : len(before)] == before[:old] + before[old + 1 :]  # verbatim
  assert after[old] != before[old]  # replaced in place
  rows = board.read_raw(str(path))
  assert len(rows) == len(FAKE) + 1
  keys = [board.row_key(r) for r in rows]
  assert len(set(keys)) == len(keys)
  by_key = dict(zip(keys, rows, strict=True))
  assert by_key["hash", "scratch", 25.0, 1]["note"] == "infeasible: boom"
  assert by_key["pq", "warm", 25.0, 0]["test_auc"] == pytest.approx(0.781)  # a failure: kept
  assert by_key["hash", "scratch", 25.0, 1]["test_auc"] is None
  assert by_key["hash", "scratch", 25.0, 0]["test_auc"] == pytest.approx(0.7901)  # kept
  assert by_key["hash", "warm", 25.0, 2]["note"] == "failed: bang"
  assert by_key["full", "stage A", 1.0, 0]["test_auc"] == pytest.approx(0.790)


def test_compare_candidates_shows_what_adding_a_line_changes(board):
  """A line that validates best on one seed changes auto's pick there: its row shows that seed's
  test AUC and the mean difference to the default list over the seeds both lists have."""

  def row(method, protocol, seed, valid, test):
    return {"method": method, "protocol": protocol, "target_ratio": 25.0, "seed": str(seed),
            "valid_auc": valid, "valid_logloss": 0.5, "test_auc": test, "test_logloss": 0.5,
            "bytes": 40.0, "ratio": 25.0, "kept": "finetune"}  # fmt: skip

  rows = [
    row("pq", "warm", 0, 0.80, 0.790),
    row("pq", "warm", 1, 0.80, 0.792),
    row("hash", "scratch", 0, 0.81, 0.796),  # validates better on seed 0 only
    row("hash", "scratch", 1, 0.79, 0.799),
    row("qr", "warm", 0, 0.70, 0.700),  # one seed: its list has one row
  ]
  pq, hash_, qr = ("pq", "warm"), ("hash", "scratch"), ("qr", "warm")
  text = board.compare_candidates(rows, [pq], [[pq, hash_], [pq, qr]], "auc")
  lines = text.strip().splitlines()
  assert (
    lines[2]
    == f"| default | {np.mean([0.790, 0.792]):.4f} ± {np.std([0.790, 0.792], ddof=1):.4f} (n=2) |"
  )
  picked = [0.796, 0.792]
  mean, std, delta = np.mean(picked), np.std(picked, ddof=1), np.mean([0.796 - 0.790, 0.0])
  assert lines[3] == f"| default + hash:scratch | {mean:.4f} ± {std:.4f} (n=2), {delta:+.4f} on 2 |"
  assert lines[4] == "| default + qr | 0.7900 (n=1), +0.0000 on 1 |"


def test_auto_rows_compare_only_candidates_of_one_stage_a_run(board):
  """auto trains one stage A: candidate cells of a seed that started from different stage-A runs
  (``stage_a_auc``; grids on other machines retrain it) give no auto row; an infeasible cell,
  which no stage A enters, joins any run."""

  def row(method, protocol, seed, run, valid, test):
    return {"method": method, "protocol": protocol, "target_ratio": 25.0, "seed": str(seed),
            "valid_auc": valid, "valid_logloss": 0.5, "test_auc": test, "stage_a_auc": run}  # fmt: skip

  pq, hash_, qr = ("pq", "warm"), ("hash", "scratch"), ("qr", "scratch")
  infeasible = {"method": "qr", "protocol": "scratch", "target_ratio": 25.0, "note": "infeasible"}
  rows = [
    row("pq", "warm", 0, 0.79, 0.80, 0.790),
    row("hash", "scratch", 0, 0.78, 0.81, 0.796),  # another stage-A run of seed 0
    row("pq", "warm", 1, 0.79, 0.80, 0.792),
    row("hash", "scratch", 1, 0.79, 0.81, 0.797),
    infeasible | {"seed": "0"},
    infeasible | {"seed": "1"},
  ]
  picks = board.auto_rows(rows, [pq, hash_, qr], "auc")
  assert [(r["seed"], r["kept"], r["test_auc"]) for r in picks] == [("1", "hash scratch", 0.797)]


def test_candidates_step_refuses_a_bad_name_in_one_line(board, capsys):
  """``candidates --candidates=<list>`` checks names as ``compress.auto_candidates`` is."""
  with pytest.raises(SystemExit) as exit_:
    board.main(["candidates", "--dataset=movielens", "--candidates=pq_head;nosuch:scratch"])
  assert exit_.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert "'nosuch:scratch' names method 'nosuch'" in err


def test_coverage_counts_infeasible_cells_apart_from_those_not_run(board):
  cell = {"n": 1, "note": ""}
  infeasible = {"n": 0, "note": "infeasible: QR needs at least 62 rows"}
  keys = [("full", "stage A", 1.0), (*board.AUTO, 25.0), ("pq", "warm", 25.0), ("qr", "warm", 25.0)]
  keys.append(("hash", "scratch", 25.0))
  table = {keys[0]: cell, keys[2]: cell, keys[3]: infeasible}
  text = board.coverage({"d": table}, {"d": keys})
  assert text.startswith("\nProvisional")
  assert "2 of the sweeps' 4 method cells have a result; 1 infeasible, 1 not run." in text
  assert "auto's rows: 0 of 1 derived" in text
  table[keys[4]] = table[keys[1]] = cell  # every line ran or cannot: complete
  text = board.coverage({"d": table}, {"d": keys})
  assert text.startswith("\nComplete: 3 of the sweeps' 4 method cells have a result; 1 infeasible.")
  assert "auto's rows: 1 of 1 derived" in text
