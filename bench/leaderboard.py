r"""The leaderboard (docs/leaderboard.md): every method, warm-started and from scratch, per dataset
and byte budget, from the grids of `mec_jax.experiments` (sweeps ``configs/sweeps/leaderboard_*.py``).

Four steps (the first three resumable):

  run      runs (or resumes) a dataset's grid in ``<root>/<dataset>``, restricted to some budgets,
           seeds and methods (``--methods``; the fixed-ratio methods int8/int4 run with every call
           that does not exclude them) or method-protocol pairs (``--candidates=hash:scratch,pq``;
           ``--candidates=auto``: the cells the auto row needs), then collects and rewrites the page;
  collect  merges a grid's finished cells into ``bench/leaderboard/<dataset>/results_raw.csv``
           (one row per cell and seed; a cell and seed the grid holds replaces its row, the
           others are kept: the repo keeps these rows, not the grids);
  candidates  prints auto's test AUC per budget under its default candidates and under lists
           that add lines (``--candidates="pq_head;qr:scratch,pq_head"``; none: each other line
           of the sweep alone), from the rows (`compare_candidates`);
  page     aggregates every ``results_raw.csv`` into ``summary.csv`` and ``auc_vs_bytes.png`` per
           dataset and writes ``docs/leaderboard.md``. Cells of a sweep without a result are shown
           as "not run".

  JAX_PLATFORMS=cpu nice -n 19 python bench/leaderboard.py run --dataset=movielens --budgets=25 \
    --seeds=2024 [--root=/tmp/board]
  python bench/leaderboard.py collect --dataset=movielens [--root=/tmp/board]
  python bench/leaderboard.py page
"""

from __future__ import annotations

import argparse
import collections
import csv
import math
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "bench", "leaderboard")
PAGE = os.path.join(REPO, "docs", "leaderboard.md")
DATASETS = ("synthetic", "frappe", "movielens", "synthetic_large")
SCRATCH_KEYS = (
  "compress.init_tables",
  "finetune.init_from_pretrain",
  "finetune.codebook_learning_rate",
)
RAW_COLUMNS = (
  "method",
  "protocol",
  "target_ratio",
  "seed",
  "test_auc",
  "test_logloss",
  "valid_auc",
  "valid_logloss",
  "bytes",
  "ratio",
  "stage_a_s",
  "stage_b_s",
  "stage_c_s",
  "kept",
  "note",
  "stage_a_auc",
)
TEXT = ("method", "protocol", "seed", "kept", "note", "picked")
FLOATS = tuple(c for c in RAW_COLUMNS if c not in TEXT)
AUTO = ("auto", "by valid")  # the derived row of `compress.method=auto` (see `auto_rows`)
AUTO_ALL = ("auto", "every line")  # the same with every budgeted (method, protocol) as candidate


def sweep_path(dataset: str) -> str:
  return os.path.join(REPO, "configs", "sweeps", f"leaderboard_{dataset}.py")


def cell_key(overrides: dict) -> tuple[str, str, float]:
  """``(name, protocol, target ratio)`` of a sweep cell: the method plus any override but the
  budget and the from-scratch keys; ``scratch`` when the backbone is not warm-started."""
  scratch = overrides.get("finetune.init_from_pretrain", True) in (False, "False", "false", 0)
  extra = [
    f"{k.rsplit('.', 1)[-1]}={v}"
    for k, v in sorted(overrides.items())
    if k not in ("compress.method", "compress.target_ratio") + SCRATCH_KEYS
  ]
  name = str(overrides.get("compress.method", "pq")) + (f" ({', '.join(extra)})" if extra else "")
  return name, "scratch" if scratch else "warm", float(overrides.get("compress.target_ratio", 0.0))


def raw_rows(records: list[dict]) -> list[dict]:
  """One row per finished cell record (`runner.records_on_disk`) and one ``full`` row per seed:
  `mec_jax.experiments.summary.raw_rows` with the leaderboard's cell name, protocol, stage times
  and ``stage_a_auc``, the test AUC of the stage-A model the cell started from (it tells apart
  the stage-A runs of one seed: grids on other machines retrain stage A, `auto_rows`)."""
  from mec_jax.experiments import summary

  rows, full_seen = [], set()
  for rec in records:
    cell, *full = summary.raw_rows([rec])
    name, protocol, _ = cell_key(rec["overrides"])
    report = rec.get("report", {})
    timings = report.get("timings", {})
    stages = {"stage_b_s": timings.get("quantize"), "stage_c_s": timings.get("finetune")}
    kept = report.get("compressed", {})
    valid = {k: kept.get(k) for k in ("valid_auc", "valid_logloss")}
    stage_a = {"stage_a_auc": report.get("full", {}).get("test_auc")}
    rows.append(
      cell
      | {"method": name, "protocol": protocol}
      | ({} if "note" in cell else stages | valid | stage_a)
    )
    if full and rec["seed"] not in full_seen:
      full_seen.add(rec["seed"])
      rows.append(full[0] | {"protocol": "stage A", "stage_a_s": full[0]["seconds"]} | stage_a)
  return rows


def auto_rows(
  rows: list[dict], candidates: list[tuple[str, str]], monitor: str, name: tuple = AUTO
) -> list[dict]:
  """The rows ``compress.method=auto`` gets, derived from the cells: per (budget, seed) whose
  candidate cells all have a record from one stage-A run (``stage_a_auc``: auto trains one stage
  A; cells of another run of that seed are not compared with them), the candidate with the best
  validation score (``compress.auto_monitor`` of its kept model), as `mec_jax.auto` picks (a
  candidate's sub-run is the grid cell of that method, protocol and seed; ties go to the earlier
  candidate). Its stage times
  are the candidates' sums (auto runs them all), a stage B that candidates share
  (`stage_b_key`) counted once; infeasible candidates are skipped, as auto skips them.

  Args:
    rows: `read_raw` rows of one dataset.
    candidates: ``(method, protocol)`` pairs, from ``compress.auto_candidates``.
    monitor: ``compress.auto_monitor`` of the dataset's config.
    name: the rows' ``(method, protocol)``.
  """
  from mec_jax.train.metrics import monitor_score

  groups: dict[tuple, dict] = {}
  for row in rows:
    if (row["method"], row["protocol"]) in candidates and (row["target_ratio"] or 0) > 1.0:
      run = row.get("stage_a_auc")  # None: infeasible (any run) or a row from before the column
      group = groups.setdefault((row["target_ratio"], row["seed"]), {})
      group.setdefault(run, {})[row["method"], row["protocol"]] = row
  out = []
  for (ratio, seed), runs in sorted(groups.items()):
    shared = runs.pop(None, {})  # infeasible cells do not depend on the stage-A run
    complete = [shared | members for members in runs.values()] or [shared]
    members = max(complete, key=len)  # candidates started from one stage-A run
    done = [r for r in members.values() if r.get("test_auc") is not None]
    if len(members) < len(candidates) or not done:
      continue
    if any(r.get("valid_auc") is None or r.get("valid_logloss") is None for r in done):
      continue  # a record from before valid metrics were collected

    def score(row):
      return monitor_score({"auc": row["valid_auc"], "logloss": row["valid_logloss"]}, monitor)

    done.sort(key=lambda r: candidates.index((r["method"], r["protocol"])))  # ties: the first
    pick = max(done, key=score)
    once = {stage_b_key(*c): c for c in reversed(candidates)}.values()  # auto shares these
    times = {
      "stage_b_s": sum(members[c].get("stage_b_s") or 0.0 for c in once),
      "stage_c_s": sum(r.get("stage_c_s") or 0.0 for r in members.values()),
    }
    row = pick | times | {"method": name[0], "protocol": name[1], "target_ratio": ratio}
    out.append(row | {"seed": seed, "kept": f"{pick['method']} {pick['protocol']}"})
  return out


def stage_b_key(method: str, protocol: str) -> tuple:
  """What a candidate's stage B depends on beyond the shared settings: its method and the
  protocol's overrides of the ``compress.*`` keys the method reads (`Method.config_keys`). Equal
  keys: `mec_jax.auto` computes that stage B once (``pq`` and ``pq:scratch``)."""
  from mec_jax.methods import protocols, registry

  keys = registry.get(method).config_keys
  overrides = protocols.PROTOCOLS[protocol]
  read = sorted(
    (k, v)
    for k, v in overrides.items()
    if k.startswith("compress.") and (keys is None or k.split(".", 1)[1] in keys)
  )
  return (method, tuple(read))


def candidate_lines(names) -> list[tuple[str, str]]:
  """Candidate names (``"pq"``, ``"hash:scratch"``) as ``(method, protocol)`` lines, checked as
  ``compress.auto_candidates`` is (`protocols.check_candidates`: ConfigError naming a bad one)."""
  from mec_jax.methods import protocols, registry

  protocols.check_candidates(names, registry.names())
  out = []
  for name in names:
    method, overrides = protocols.parse(name)
    out.append((method, "scratch" if overrides else "warm"))
  return out


def auto_candidates(config) -> list[tuple[str, str]]:
  """``compress.auto_candidates`` of ``config`` as ``(method, protocol)`` lines."""
  return candidate_lines(config.compress.auto_candidates)


def write_csv(path: str, rows: list[dict], columns) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  os.replace(path + ".tmp", path)


def read_raw(path: str) -> list[dict]:
  """``results_raw.csv`` rows with numbers as floats (None where empty)."""
  with open(path, newline="") as fh:
    rows = list(csv.DictReader(fh))
  for row in rows:
    for key in FLOATS:
      row[key] = float(row[key]) if row.get(key) not in (None, "") else None
  return rows


def _mean_std(values) -> tuple[float, float]:
  vals = [v for v in values if v is not None]
  if not vals:
    return float("nan"), float("nan")
  return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")


def aggregate(rows: list[dict]) -> dict[tuple, dict]:
  """``{(method, protocol, target_ratio): summary}``: test AUC mean ± sample std over the seeds
  (``n`` of them), mean bytes, ratio and stage times; ``note`` holds why a cell has no AUC."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault((row["method"], row["protocol"], row["target_ratio"]), []).append(row)
  out = {}
  for key, members in groups.items():
    done = [m for m in members if m.get("test_auc") is not None]
    auc, std = _mean_std(m["test_auc"] for m in done)
    notes = sorted({m["note"] for m in members if m.get("note")})
    out[key] = {
      "method": key[0],
      "protocol": key[1],
      "target_ratio": key[2],
      "n": len(done),
      "test_auc": auc,
      "test_auc_std": std,
      "test_logloss": _mean_std(m["test_logloss"] for m in done)[0],
      "bytes": _mean_std(m["bytes"] for m in done)[0],
      "ratio": _mean_std(m["ratio"] for m in done)[0],
      "stage_a_s": _mean_std(m.get("stage_a_s") for m in done)[0],
      "stage_b_s": _mean_std(m.get("stage_b_s") for m in done)[0],
      "stage_c_s": _mean_std(m.get("stage_c_s") for m in done)[0],
      "kept": "/".join(sorted({m["kept"] for m in done if m.get("kept")})),
      "note": notes[0] if notes and not done else "",
      "by_seed": {m["seed"]: m["test_auc"] for m in done},
    }
  return out


def paired_gap(cell: dict, reference: dict) -> tuple[float, int]:
  """Mean over the seeds both ran of ``cell``'s test AUC minus ``reference``'s, and how many
  seeds: a seed's stage-A run moves every cell of that seed, so means over different seeds
  are not compared."""
  seeds = sorted(set(cell["by_seed"]) & set(reference["by_seed"]))
  if not seeds:
    return float("nan"), 0
  return float(np.mean([cell["by_seed"][s] - reference["by_seed"][s] for s in seeds])), len(seeds)


def winners(table: dict[tuple, dict]) -> dict[float, set[tuple]]:
  """Per budget column, the keys of the compressed cells with the best mean test AUC (ties kept)."""
  best: dict[float, set[tuple]] = {}
  for column in {k[2] for k in table if k[0] != "full"}:
    cells = [k for k in table if k[2] == column and k[0] != "full" and table[k]["n"]]
    top = max((table[k]["test_auc"] for k in cells), default=None)
    best[column] = {k for k in cells if table[k]["test_auc"] == top}
  return best


def _auc(cell: dict | None, bold: bool) -> str:
  if cell is None:
    return "not run"
  if not cell["n"]:
    return cell["note"].split(":")[0] if cell["note"] else "not run"
  text = f"{cell['test_auc']:.4f}"
  text += "" if math.isnan(cell["test_auc_std"]) else f" ± {cell['test_auc_std']:.4f}"
  return (f"**{text}**" if bold else text) + f" (n={cell['n']})"


def _secs(value: float) -> str:
  return "" if value is None or math.isnan(value) else f"{value:.0f}"


def dataset_section(dataset: str, table: dict[tuple, dict], expected: list[tuple]) -> str:
  """The markdown of one dataset: the AUC matrix (rows: method x protocol; columns: budgets,
  then the fixed-ratio methods' own ratio) with each column's winner in bold, then every cell's
  bytes and stage times (cells with a record only). ``expected``: the sweep's cells; those without a result are "not run"."""
  keys = list(dict.fromkeys(expected + sorted(table)))
  budgets = sorted({k[2] for k in keys if k[2] > 1.0})
  best = winners(table)
  rows = list(dict.fromkeys((k[0], k[1]) for k in keys if k[0] != "full"))
  head = " | ".join([f"{b:g}x" for b in budgets] + ["own ratio (int8/int4)"])
  lines = [
    f"| method | protocol | {head} |",
    "|---|---|" + "---|" * (len(budgets) + 1),
  ]
  full = table.get(("full", "stage A", 1.0))
  lines.append(
    f"| full (stage A) | reference | {' | '.join([_auc(full, False)] * (len(budgets) + 1))} |"
  )
  for name, protocol in rows:
    cells = []
    for column in budgets + [0.0]:
      key = (name, protocol, column)
      if key in table or key in expected:
        text = _auc(table.get(key), key in best.get(column, ()))
        ratio = table[key]["ratio"] if key in table and table[key]["n"] else None
        cells.append(text + (f", {ratio:.1f}x" if column == 0.0 and ratio else ""))
      else:
        cells.append("—")
    lines.append(f"| {name} | {protocol} | {' | '.join(cells)} |")
  lines += [
    "",
    "| method | protocol | target | n | test AUC | bytes (compressed fields) | ratio | stage A s "
    "| stage B s | stage C s | kept |",
    "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
  ]
  for key in keys:  # the cells with a record (the matrix shows those not run)
    cell = table.get(key)
    if cell is None:
      continue
    target = "—" if key[2] <= 1.0 else f"{key[2]:g}x"
    if not cell["n"]:
      lines.append(
        f"| {key[0]} | {key[1]} | {target} | 0 | {cell['note'] or 'no AUC'} | | | | | | |"
      )
      continue
    lines.append(
      f"| {key[0]} | {key[1]} | {target} | {cell['n']} "
      f"| {_auc(cell, key in best.get(key[2], ())).rsplit(' (n=', 1)[0]} | {cell['bytes']:,.0f} "
      f"| {cell['ratio']:.1f}x | {_secs(cell['stage_a_s'])} | {_secs(cell['stage_b_s'])} "
      f"| {_secs(cell['stage_c_s'])} | {cell['kept']} |"
    )
  return "\n".join(lines) + "\n"


def _tol(best: dict, cell: dict) -> float:
  """One seed std: the best line's; when it ran one seed (no std), the compared row's; else 0."""
  for row in (best, cell):
    if not math.isnan(row["test_auc_std"]):
      return row["test_auc_std"]
  return 0.0


def recommendation(tables: dict[str, dict[tuple, dict]]) -> str:
  """Sentences on the library's recommended method (``compress.method=auto``, the derived row):
  in how many measured (dataset, budget) cells it is within one seed std (`_tol`) of the best
  method line (the derived auto rows are not lines), where not, and its gap to the full model at
  >= 25x; then the best single (method, protocol)."""
  score: dict[tuple, list] = {}
  cells, auto_missed, gaps = [], [], []
  for dataset, table in tables.items():
    full = table.get(("full", "stage A", 1.0))
    for column in sorted({k[2] for k in table if k[2] > 1.0}):
      lines = [  # the methods' rows: the derived auto rows are not methods to beat
        k for k in table if k[2] == column and table[k]["n"] and k[0] not in ("full", AUTO[0])
      ]
      if not lines:
        continue
      best = table[max(lines, key=lambda k: (table[k]["test_auc"], k))]
      cells.append((dataset, column))
      for key, cell in table.items():
        if (
          key[2] == column and cell["n"] and cell["test_auc"] >= best["test_auc"] - _tol(best, cell)
        ):
          score.setdefault(key[:2], []).append((dataset, column))
      auto = table.get((*AUTO, column))
      if auto is None or not auto["n"]:
        continue
      if (dataset, column) not in score.get(AUTO, []):
        unresolved = best["n"] < 2 and auto["n"] < 2  # one seed each: no std to judge by
        auto_missed.append(
          f"{dataset} {column:g}x ({auto['test_auc']:.4f} vs {best['method']} {best['protocol']} "
          f"{best['test_auc']:.4f}" + ("; one seed each, no std" if unresolved else "") + ")"
        )
      if column >= 25 and full is not None and full["n"]:
        gap, seeds = paired_gap(auto, full)
        if seeds:
          gaps.append(
            f"{dataset} {column:g}x {gap:+.{4 if abs(gap) >= 5e-5 else 5}f}"
            + (f" ({seeds} of the full model's {full['n']} seeds)" if seeds < full["n"] else "")
          )
  if not cells:
    return "No budgeted cell has a result yet: no recommendation."
  measured = len(score.get(AUTO, [])) + len(auto_missed)
  text = (
    "**Pick `compress.method=auto`** (the library's recommendation: it runs the candidates "
    "`compress.auto_candidates` at the budget and keeps the best on validation; row `auto`). "
  )
  if measured:
    text += (
      f"On the cells where all its candidates ran it is the best method line, or within one seed "
      f"std of it (that line's std; auto's own when the best line ran one seed), in "
      f"{len(score.get(AUTO, []))} of {measured}"
      + (f"; not in {', '.join(auto_missed)}" if auto_missed else "")
      + ". "
    )
  if gaps:
    text += (
      f"Test AUC minus the full model's at >= 25x (paired: the mean over the seeds both ran of "
      f"each seed's difference): {', '.join(gaps)}. "
    )
  single = {k: v for k, v in score.items() if k[0] != AUTO[0]}
  if single:
    pick = max(single, key=lambda k: len(single[k]))
    missed = [f"{d} {c:g}x" for d, c in cells if (d, c) not in single[pick]]
    text += (
      f"\n\nOf the single methods, `{pick[0]}` ({pick[1]}) is the best or within one seed std of "
      f"the best in {len(single[pick])} of {len(cells)} measured cells"
      + (f"; not in {', '.join(missed)}." if missed else ".")
    )
  return text


def load_sweep(dataset: str):
  """``(base config, the sweep's overrides)`` of a dataset's sweep file (``(None, [])`` without)."""
  if not os.path.exists(sweep_path(dataset)):
    return None, []
  from mec_jax.experiments import runner

  config, _, sweep, _ = runner.load_sweep(sweep_path(dataset))
  return config, sweep


def expected_cells(sweep: list[dict]) -> list[tuple]:
  """The cells of a sweep, with full and the derived auto row at each budget."""
  keys = [cell_key(o) for o in sweep]
  budgets = sorted({k[2] for k in keys if k[2] > 1.0})
  autos = [(*name, b) for name in (AUTO, AUTO_ALL) for b in budgets]
  return [("full", "stage A", 1.0)] + autos + keys


def commands(dataset: str) -> str:
  return (
    "```bash\n"
    "export JAX_PLATFORMS=cpu PYTHONPATH=$PWD\n"
    f"nice -n 19 python bench/leaderboard.py run --dataset={dataset} --budgets=25 --seeds=2024\n"
    f"nice -n 19 python bench/leaderboard.py run --dataset={dataset} --budgets=10,25,50,100 "
    "--seeds=2024,2025,2026  # the whole grid\n"
    "python bench/leaderboard.py page  # from bench/leaderboard/*/results_raw.csv\n"
    "```\n"
  )


def plot(dataset: str, table: dict[tuple, dict], path: str) -> None:
  """AUC vs bytes, one line per (method, protocol), via the grids' own plot."""
  from mec_jax.experiments import summary

  rows = [
    c | {"label": "full (stage A)" if c["method"] == "full" else f"{c['method']} ({c['protocol']})"}
    for c in table.values()
    if c["n"]
  ]
  if rows:
    summary.plot(rows, path, f"{dataset}: test AUC vs bytes (leaderboard)")


INTRO = """\
# Leaderboard: the best model at every byte budget

Generated by `bench/leaderboard.py page` from `bench/leaderboard/<dataset>/results_raw.csv`, which
`bench/leaderboard.py run|collect` fill from the grids of `mec_jax.experiments` (sweep files
`configs/sweeps/leaderboard_<dataset>.py`; the method list is the registry of `compress.method`,
see `configs.sweeps.leaderboard_sweep`). A grid is merged into those rows: a cell and seed it holds
replaces the row, the others stay, so the rows may come from several grids and machines. Each
grid retrains stage A of its seeds (its `full` row replaces the older one), and a retrained stage
A differs (on Frappe, seed 2026 scored 0.9546 on one machine and 0.9580 on another), so every row
names the stage-A run it started from (`stage_a_auc` in the CSV): auto's row compares only
candidates of one run; a line's mean ± std is over whichever runs its seeds had. Do not edit by
hand: rerun the page.

- **warm**: stage B fits the method's tables to the stage-A model; stage C trains them with the
  stage-A weights frozen (`finetune.codebook_learning_rate`); the swap-in is kept when it validates
  better. **scratch**: the method as its users train it (`compress.init_tables=random`,
  `finetune.init_from_pretrain=False`, `finetune.codebook_learning_rate=0.0`): random tables (PQ and
  int8/int4 keep their stage-B codes/rows) and a fresh backbone, every weight trained.
- Test AUC of the kept compressed model, mean ± sample std over the seeds run (`n`); one seed gives
  no std, so differences under ~0.001 are not resolved there. **Bold**: the best mean in its column
  (budget). Bytes: the compressed fields only, bit-packed (`report.json`,
  `memory.compressed_fields_only`); a method may use less than its budget. Stage times are wall
  seconds on the shared 2-core machine at `nice -n 19` (load varies; compare within a run only).
- **auto** (by valid): what `compress.method=auto` keeps, derived from the cells of its candidates
  (`compress.auto_candidates` of the dataset's config) at the same budget and seed: the candidate
  with the best validation score (`compress.auto_monitor`, AUC); `kept` names it. Its stage times are the
  candidates' sums (auto runs them all; a stage B two candidates share, as `pq` and `pq:scratch` do, counted once). Shown once all its candidates have a record. **auto
  (every line)**: the same pick with every budgeted method and protocol of the sweep as a
  candidate (`compress.auto_candidates` listing them all; ~12x one method's cost).
- "not run": in the sweep, no result yet (never filled in); "infeasible": the method cannot meet the
  budget (e.g. QR's 2 sqrt(V) floor); "failed": the cell stopped on an error (its `cell.json` says
  which; rerunning the grid retries it).
"""


def coverage(tables: dict, expected: dict) -> str:
  """What the sweeps' cells hold, counted as the matrix shows them: a result, "infeasible",
  "failed" or "not run"; auto's derived rows apart (they exist only where every candidate ran
  on one stage-A run). "Complete" when every method cell has a result or is infeasible."""
  lines, derived = collections.Counter(), collections.Counter()
  for dataset, keys in expected.items():
    for key in keys:
      cell = tables[dataset].get(key)
      state = "a result" if cell is not None and cell["n"] else _auc(cell, False)
      (derived if key[:2] in (AUTO, AUTO_ALL) else lines)[state] += 1
  complete = not set(lines) - {"a result", "infeasible"}
  parts = [f"{n} {state}" for state, n in sorted(lines.items()) if state != "a result"]
  return (
    ("\nComplete" if complete else "\nProvisional (the sentence speaks for the cells that ran)")
    + f": {lines['a result']} of the sweeps' {sum(lines.values())} method cells have a result"
    + (f"; {', '.join(parts)}" if parts else "")
    + f". auto's rows: {derived['a result']} of {sum(derived.values())} derived.\n"
  )


def page() -> None:
  tables, sections, expected_all = {}, [], {}
  for dataset in DATASETS:
    raw = os.path.join(OUT, dataset, "results_raw.csv")
    rows = read_raw(raw) if os.path.exists(raw) else []
    config, sweep = load_sweep(dataset)
    if config is not None:
      monitor = config.compress.auto_monitor
      lines = list(dict.fromkeys(k[:2] for k in map(cell_key, sweep) if k[2] > 1.0))
      rows += auto_rows(rows, auto_candidates(config), monitor) + auto_rows(
        rows, lines, monitor, AUTO_ALL
      )
    table = aggregate(rows)
    tables[dataset] = table
    expected = expected_all[dataset] = expected_cells(sweep) if sweep else []
    if not expected and not table:
      continue
    text = f"## {dataset}\n\n{commands(dataset)}\n"
    if table:
      write_csv(
        os.path.join(OUT, dataset, "summary.csv"),
        list(table.values()),
        [k for k in next(iter(table.values())) if k != "by_seed"],  # the raw rows hold the seeds
      )
      png = os.path.join(OUT, dataset, "auc_vs_bytes.png")
      plot(dataset, table, png)
      if os.path.exists(png):
        text += f"![{dataset}: AUC vs bytes](../bench/leaderboard/{dataset}/auc_vs_bytes.png)\n\n"
    else:
      text += "Nothing run yet on this dataset.\n\n"
    sections.append(text + dataset_section(dataset, table, expected))
  body = f"## Which method to pick\n\n{recommendation(tables)}\n" + coverage(tables, expected_all)
  with open(PAGE + ".tmp", "w") as fh:
    fh.write(INTRO + "\n" + body + "\n" + "\n".join(sections))
  os.replace(PAGE + ".tmp", PAGE)


def candidate_name(line: tuple[str, str]) -> str:
  """A ``(method, protocol)`` line as a ``compress.auto_candidates`` entry (``"hash:scratch"``)."""
  return line[0] + (":scratch" if line[1] == "scratch" else "")


def compare_candidates(rows: list[dict], default: list[tuple], lists: list[list[tuple]], monitor):
  """Markdown: per budget, the test AUC of auto's pick (mean ± std, n seeds) under the ``default``
  candidate list and under each of ``lists``, with each list's mean difference to the default over
  the (budget, seed) pairs both have (a list's row needs every candidate's cell). Auto picks on
  validation either way; this is how the leaderboard's test columns judge a candidate list, so a
  list chosen from it is chosen on test figures (say so where it sets a default)."""
  budgets = sorted({r["target_ratio"] for r in rows if (r["target_ratio"] or 0.0) > 1.0})
  base = {(r["target_ratio"], r["seed"]): r for r in auto_rows(rows, default, monitor)}
  out = [
    "| candidates | " + " | ".join(f"{b:g}x" for b in budgets) + " |",
    "|---|" + "---|" * len(budgets),
  ]
  for cands in [default, *lists]:
    picks = auto_rows(rows, cands, monitor)
    table = aggregate(picks)
    cells = []
    for b in budgets:
      text = _auc(table.get((*AUTO, b)), False)
      both = [r for r in picks if r["target_ratio"] == b and (b, r["seed"]) in base]
      if cands is not default and both:
        delta = np.mean([r["test_auc"] - base[b, r["seed"]]["test_auc"] for r in both])
        text += f", {delta:+.4f} on {len(both)}"
      cells.append(text)
    extra = [candidate_name(c) for c in cands if c not in default]
    name = "default" if cands is default else "default + " + ", ".join(extra)
    out.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(out) + "\n"


def candidate_table(dataset: str, lists: list[list[str]]) -> str:
  """`compare_candidates` on a dataset's rows: ``lists`` of candidate names added to the dataset
  config's ``compress.auto_candidates``, or (none given) each other line of its sweep alone."""
  config, sweep = load_sweep(dataset)
  rows = read_raw(os.path.join(OUT, dataset, "results_raw.csv"))
  default = auto_candidates(config)
  if lists:
    extra = [default + [c for c in candidate_lines(names) if c not in default] for names in lists]
  else:
    lines = dict.fromkeys(k[:2] for k in map(cell_key, sweep) if k[2] > 1.0)
    extra = [default + [line] for line in lines if line not in default]
  return compare_candidates(rows, default, extra, config.compress.auto_monitor)


def row_key(row: dict) -> tuple:
  """A raw row's cell and seed: ``(method, protocol, target ratio, seed)``."""
  ratio = float(row.get("target_ratio") or 0.0)
  return row["method"], row["protocol"], ratio, int(float(row["seed"]))


def merge_rows(kept: list[dict], new: list[dict]) -> list[dict]:
  """``kept`` with each row replaced by the ``new`` row of the same cell and seed (`row_key`), in
  place, and the other new rows appended: a grid that holds only some cells (a fresh root, a
  grid run on another machine) adds to the committed rows instead of dropping the rest. A failed
  new cell does not replace a kept result (the grid's exit status names the failure)."""
  fresh = {row_key(r): r for r in new}
  out = []
  for row in kept:
    update = fresh.pop(row_key(row), row)
    failed = str(update.get("note") or "").startswith("failed") and row.get("test_auc")
    out.append(row if failed else update)
  return out + [r for r in new if row_key(r) in fresh]


def collect(dataset: str, root: str) -> None:
  """Merges the finished cells of ``<root>/<dataset>`` into ``results_raw.csv`` (`merge_rows`)."""
  from mec_jax.experiments import runner

  path = os.path.join(OUT, dataset, "results_raw.csv")
  rows = raw_rows(runner.records_on_disk(os.path.join(root, dataset)))
  kept = []
  if os.path.exists(path):  # as text: a kept row is written back unchanged
    with open(path, newline="") as fh:
      kept = list(csv.DictReader(fh))
  write_csv(path, merge_rows(kept, rows), RAW_COLUMNS)


def run(
  dataset: str,
  root: str,
  budgets: list[float],
  seeds: list[int],
  methods: list[str] = (),
  candidates: list[str] = (),
) -> None:
  """Runs the cells of a dataset's sweep at ``budgets`` (all: empty) and ``seeds`` (the file's:
  empty), of ``methods`` (all: empty) and of the ``candidates`` (``"<method>[:scratch]"``; ``auto``:
  the dataset config's ``compress.auto_candidates``, the cells its auto row is derived from)."""
  from mec_jax.experiments import runner
  from mec_jax.methods import protocols

  if "auto" in candidates:
    config, _ = load_sweep(dataset)
    candidates = [c for c in candidates if c != "auto"] + list(config.compress.auto_candidates)

  def only(overrides: dict) -> bool:
    ratio = float(overrides.get("compress.target_ratio", 0.0))
    if methods and overrides.get("compress.method", "pq") not in methods:
      return False
    if candidates and protocols.name_of(overrides) not in candidates:
      return False
    return not ratio or not budgets or ratio in budgets

  runner.run_grid(sweep_path(dataset), os.path.join(root, dataset), only=only, seeds=seeds or None)
  collect(dataset, root)
  page()


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("step", choices=("run", "collect", "page", "candidates"))
  parser.add_argument("--dataset", choices=DATASETS)
  parser.add_argument("--root", default="/tmp/board", help="parent of the grids' workdirs")
  parser.add_argument("--budgets", default="", help="comma-separated target ratios (run)")
  parser.add_argument("--seeds", default="", help="comma-separated seeds (run; default the file's)")
  parser.add_argument("--methods", default="", help="comma-separated compress.method values (run)")
  parser.add_argument(
    "--candidates",
    default="",
    help="comma-separated '<method>' (warm) or '<method>:scratch' cells (run); 'auto': the "
    "dataset config's compress.auto_candidates; candidates: ';'-separated lists to add to the "
    "default (none: each other line of the sweep alone)",
  )
  args = parser.parse_args(argv)
  if args.step != "page" and not args.dataset:
    parser.error(f"{args.step} needs --dataset")
  sys.path.insert(0, REPO)  # the sweep files import `configs`
  if args.step == "run":
    budgets = [float(b) for b in args.budgets.split(",") if b]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    candidates = [c for c in args.candidates.split(",") if c]
    run(args.dataset, args.root, budgets, seeds, methods, candidates)
  elif args.step == "collect":
    collect(args.dataset, args.root)
    page()
  elif args.step == "candidates":
    from mec_jax.errors import ConfigError

    lists = [[c for c in part.split(",") if c] for part in args.candidates.split(";") if part]
    try:
      print(candidate_table(args.dataset, lists), end="")
    except ConfigError as err:  # a bad candidate name: one line
      parser.error(f"--candidates: {err}")
  else:
    page()


if __name__ == "__main__":
  main(sys.argv[1:])
