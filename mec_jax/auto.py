"""``compress.method=auto``: train each candidate at the byte budget, keep the best on validation.

No method wins everywhere at a budget (docs/leaderboard.md): a user who sets
``compress.target_ratio`` wants the best model within it. ``auto`` runs stage A once, then each
candidate of ``compress.auto_candidates`` (``"<method>"``: warm-started from stage A, the pipeline's
normal protocol; ``"<method>:scratch"``: from scratch, `protocols.FROM_SCRATCH`) through stages B
and C, and keeps the candidate whose kept compressed model (``report["compressed"]``) has the best
validation score (``compress.auto_monitor``: AUC by default, the metric a byte budget is judged
by; ties go to the earlier candidate). The
winner alone is exported. Test metrics play no part in the pick.

Layout of the work directory (besides stage A's files, `mec_jax.workdir`)::

  auto/<candidate>/                 a pipeline work directory: stage A hard-linked in, then B, C
  auto/<candidate>/candidate.json   written last: the candidate finished, or is infeasible
  auto/selection.json               the scores and the pick
  report.json  report.md            the winner's report plus an ``auto`` section; ``artifacts``
                                    name the winner's ``auto/<candidate>/export/``

Seeds: every run uses the config's seeds as given, so a candidate's sub-run computes exactly what
a plain run with ``compress.method=<method>`` (plus the protocol's overrides) computes, and
exactly the grid cell of that method, protocol and seed (`mec_jax.experiments.runner`, whose cells
also link one stage A per seed) when ``train.seed``, ``quantize.seed`` and ``compress.hash_seed``
equal the grid's seed. That is what lets a leaderboard derive the auto row from its cells.

A budget a candidate cannot meet (`BudgetError`, e.g. QR below its floor) makes it infeasible: it
is recorded and skipped; when every candidate is infeasible the run stops with one line. A killed
run keeps its finished candidates and resumes the unfinished one from its checkpoints.
``stage=report`` reports from the files alone.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import time

from mec_jax import methods, pipeline, workdir_lock
from mec_jax import report as report_lib
from mec_jax import workdir as workdir_lib
from mec_jax.config_checks import validate_config
from mec_jax.errors import ArtifactError, BudgetError, ConfigError, one_line
from mec_jax.methods import protocols
from mec_jax.train import distributed
from mec_jax.train.metrics import monitor_score

RECORD = "candidate.json"
SELECTION = "selection.json"
STAGES = ("all", "pretrain", "finetune", "export", "report")  # stage=quantize has no auto meaning


def candidate_dir(root: str, name: str) -> str:
  """``<root>/auto/<candidate>``: the work directory of candidate ``name`` (``hash:scratch`` ->
  ``auto/hash_scratch``)."""
  return os.path.join(root, "auto", workdir_lib.safe_name(name))


def candidate_config(config, name: str, stage: str):
  """A copy of ``config`` for candidate ``name`` at ``stage``: its method and protocol overrides,
  the auto run's dataset cache, its own report directory (``report_dir`` is the auto run's)."""
  method, overrides = protocols.parse(name)
  out = config.copy_and_resolve_references()
  out.compress.method = method
  for key, value in overrides.items():
    section, leaf = key.split(".")
    out[section][leaf] = value
  out.stage = stage
  out.report_dir = ""
  return out


def run(config, workdir: str) -> dict | None:
  """Runs ``compress.method=auto`` (see the module docstring); returns the report.

  ``config.stage``: ``all`` (stage A, every candidate, the pick, the winner's export),
  ``pretrain`` (stage A only), ``finetune`` (no export), ``export`` (the winner of a finished
  pick), ``report`` (from the files; nothing trained).
  """
  validate_config(config)
  if config.stage not in STAGES:
    raise ConfigError(f"config.stage={config.stage!r} with compress.method=auto; expected {STAGES}")
  root = workdir_lib.Workdir(workdir).root
  config = config.copy_and_resolve_references()
  config.data.cache_dir = config.data.cache_dir or workdir_lib.Workdir(root).cache
  if config.stage == "report":
    workdir_lib.check_workdir(root, writable=False)
    out_dir = config.report_dir or (root if workdir_lib.is_writable(root) else None)
    return _report(config, root, _records(config, root, run_missing=False), out_dir)
  workdir_lib.check_workdir(root, writable=True)
  os.makedirs(os.path.join(root, "auto"), exist_ok=True)
  writer = distributed.is_writer()
  with workdir_lock.hold(os.path.join(root, "auto")) if writer else contextlib.nullcontext():
    names = tuple(config.compress.auto_candidates)
    if config.stage == "export" and not os.path.exists(os.path.join(root, "auto", SELECTION)):
      raise ArtifactError(f"{root}: no finished compress.method=auto pick to export; run all first")
    if config.stage != "export":
      stage_a = candidate_config(config, names[0], "pretrain")
      stage_a.report_dir = config.report_dir
      full = pipeline.run(stage_a, root)
      if config.stage == "pretrain" or full.get("nothing_compressed"):
        return full
    records = _records(config, root, run_missing=config.stage != "export")
    if writer:
      report_lib.write_json_atomic(os.path.join(root, "config.json"), config.to_dict())
    picked = pick(records, config.compress.auto_monitor)
    if config.stage in ("all", "export"):
      pipeline.run(candidate_config(config, picked, "export"), candidate_dir(root, picked))
    return _report(config, root, records, (config.report_dir or root) if writer else None)


def run_candidate(config, root: str, name: str) -> dict:
  """Stages B and C of candidate ``name`` in `candidate_dir` (stage A linked from ``root``);
  returns its record ``{"candidate", "seed", "overrides", "report" | "infeasible", "seconds",
  "settings"}`` (a grid cell's record, plus the settings its stages depend on). A finished one
  (``candidate.json``) is reused; from other settings (e.g. another budget) it is a ConfigError."""
  workdir = candidate_dir(root, name)
  done = os.path.join(workdir, RECORD)
  settings = workdir_lib.stage_fingerprints(candidate_config(config, name, "all"))["finetune"]
  if os.path.exists(done):
    record = report_lib.read_json(done)
    before = record.get("settings", settings)  # a record without settings: not compared
    changed = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
    if changed:
      raise ConfigError(
        f"{done} was computed with other settings (config.{', config.'.join(changed[:4])}); "
        f"delete {workdir} to recompute it, or use another --workdir"
      )
    return record
  workdir_lib.link_stage(root, workdir)
  method, overrides = protocols.parse(name)
  _share_stage_b(config, root, name)
  record = {"candidate": name, "seed": config.train.seed, "settings": settings}
  record["overrides"] = {"compress.method": method} | overrides
  if config.compress.target_ratio:
    record["overrides"]["compress.target_ratio"] = config.compress.target_ratio
  start = time.time()
  try:
    pipeline.run(candidate_config(config, name, "quantize"), workdir)
    record["report"] = pipeline.run(candidate_config(config, name, "finetune"), workdir)
  except BudgetError as err:  # a budget this method cannot meet; other errors stop the run
    record["infeasible"] = one_line(err)
  record["seconds"] = time.time() - start
  if distributed.is_writer():
    report_lib.write_json_atomic(done, record)
  return record


def _share_stage_b(config, root: str, name: str) -> None:
  """Links into candidate ``name``'s directory the stage B of a finished candidate that computed
  it with the same settings (e.g. ``pq`` for ``pq:scratch``: PQ's stage B reads no protocol key,
  `methods.Method.config_keys`), so it is not computed twice."""
  stage_b = candidate_config(config, name, "quantize")
  finished = [
    candidate_dir(root, n)
    for n in config.compress.auto_candidates
    if os.path.exists(os.path.join(candidate_dir(root, n), RECORD))
  ]
  keys = methods.get(stage_b.compress.method).config_keys
  workdir_lib.link_same_stage(stage_b, finished, candidate_dir(root, name), "quantize", keys)


def _records(config, root: str, *, run_missing: bool) -> dict[str, dict]:
  """``{candidate: record}`` in ``compress.auto_candidates`` order; unfinished candidates are run
  (``run_missing``) or left out."""
  out = {}
  for name in config.compress.auto_candidates:
    if run_missing or os.path.exists(os.path.join(candidate_dir(root, name), RECORD)):
      out[name] = run_candidate(config, root, name)
  return out


def valid_score(record: dict, monitor: str) -> float | None:
  """The ``compress.auto_monitor`` score of a candidate's kept model on validation (None: infeasible or
  nothing compressed)."""
  kept = record.get("report", {}).get("compressed")
  if kept is None:
    return None
  return monitor_score({"auc": kept["valid_auc"], "logloss": kept["valid_logloss"]}, monitor)


def pick(records: dict[str, dict], monitor: str) -> str:
  """The candidate with the best `valid_score` (the first of equals).

  Raises:
    BudgetError: no candidate is feasible (naming the first one's reason).
  """
  scores = {n: valid_score(r, monitor) for n, r in records.items()}
  feasible = [n for n, s in scores.items() if s is not None]
  if not feasible:
    reasons = [f"{n}: {r.get('infeasible', 'nothing compressed')}" for n, r in records.items()]
    raise BudgetError(
      f"config.compress.auto_candidates: no candidate is feasible ({reasons[0] if reasons else ''}"
      f"{f'; and {len(reasons) - 1} more' if len(reasons) > 1 else ''})"
    )
  return max(feasible, key=lambda n: scores[n])


def auto_section(config, records: dict[str, dict], picked: str) -> dict:
  """The report's ``auto`` section: per candidate its kept model's metrics, bytes and ratio (the
  compressed fields alone, bit-packed, as the grid tables count them) and seconds; the pick."""
  candidates = {}
  for name, rec in records.items():
    kept = rec.get("report", {}).get("compressed")
    if kept is None:
      candidates[name] = {"infeasible": rec.get("infeasible", "nothing compressed")}
      continue
    only = rec["report"]["memory"]["compressed_fields_only"]
    candidates[name] = {
      "valid_auc": kept["valid_auc"],
      "valid_logloss": kept["valid_logloss"],
      "valid_score": valid_score(rec, config.compress.auto_monitor),
      "test_auc": kept["test_auc"],
      "kept": kept["source"],
      "bytes": only["compressed_bytes_packed"],
      "ratio": only["ratio_packed"],
      "seconds": rec["seconds"],
    }
  pending = [n for n in config.compress.auto_candidates if n not in records]
  section = {"candidates": candidates, "picked": picked, "monitor": config.compress.auto_monitor}
  return section | ({"pending": pending} if pending else {})


def _report(config, root: str, records: dict[str, dict], out_dir: str | None) -> dict:
  """The winner's report plus the ``auto`` section; written (json, markdown, the winner's plots)
  to ``out_dir`` with ``auto/selection.json`` unless ``out_dir`` is None."""
  if not records:
    raise ArtifactError(f"{root}: no finished compress.method=auto candidate; run stage=all first")
  picked = pick(records, config.compress.auto_monitor)
  winner = candidate_dir(root, picked)
  path = os.path.join(winner, "report.json")  # after the export, it names export/ too
  report = report_lib.read_json(path) if os.path.exists(path) else dict(records[picked]["report"])
  report["auto"] = auto_section(config, records, picked)
  rel = os.path.relpath(winner, root)
  report["artifacts"] = {k: os.path.join(rel, v) for k, v in report.get("artifacts", {}).items()}
  timings = os.path.join(root, "timings.json")  # stage A's (the candidates' are in `auto`)
  stage_a = report_lib.read_json(timings) if os.path.exists(timings) else {}
  export = {k: v for k, v in report.get("timings", {}).items() if k == "export"}  # the winner's
  report["timings"] = (
    stage_a | {f"candidate {n}": r["seconds"] for n, r in records.items()} | export
  )
  if out_dir is not None:
    os.makedirs(out_dir, exist_ok=True)
    if out_dir == root:
      selection = {k: report["auto"][k] for k in ("picked", "monitor")}
      selection["scores"] = {
        n: valid_score(r, config.compress.auto_monitor) for n, r in records.items()
      }
      report_lib.write_json_atomic(os.path.join(root, "auto", SELECTION), selection)
    report_lib.write_json_atomic(os.path.join(out_dir, "report.json"), report)
    _write_text(
      os.path.join(out_dir, "report.md"), report_lib.to_markdown(report) + markdown(report)
    )
    for plot in glob.glob(os.path.join(winner, "*.png")):
      shutil.copy(plot, os.path.join(out_dir, os.path.basename(plot)))
  return report


def markdown(report: dict) -> str:
  """The ``auto`` section of ``report.md``: one row per candidate, the pick in bold."""
  section = report["auto"]
  lines = [
    "",
    f"## compress.method=auto (picked on validation {section['monitor']})",
    "",
    "| candidate | valid AUC | valid logloss | test AUC | kept | bytes | ratio | seconds |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for name, c in section["candidates"].items():
    label = f"**{name}**" if name == section["picked"] else name
    if "infeasible" in c:
      lines.append(f"| {label} | infeasible: {c['infeasible']} | | | | | | |")
      continue
    lines.append(
      f"| {label} | {c['valid_auc']:.4f} | {c['valid_logloss']:.4f} | {c['test_auc']:.4f} "
      f"| {c['kept']} | {c['bytes']:,} | {c['ratio']:.1f}x | {c['seconds']:.0f} |"
    )
  if section.get("pending"):
    lines += ["", f"Not finished yet: {', '.join(section['pending'])}."]
  return "\n".join(lines) + "\n"


def _write_text(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as fh:
    fh.write(text)
  os.replace(tmp, path)
