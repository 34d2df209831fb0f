"""A grid of compression methods x byte budgets x seeds over one dataset config, resumable.

A **sweep file** (``configs/sweeps/<name>.py``) defines::

  def get_config():   # the base config (a dataset config, maybe adjusted)
  SEEDS = [2024, 2025, 2026]
  SWEEP = [{"compress.method": "pq", "compress.target_ratio": 25.0}, ...]  # flat overrides
  FINETUNE = True     # optional; False: stages B and the swap-in only (no stage C), cheaper

Layout of the grid's workdir::

  cache/                        the encoded dataset, shared by every run (data.cache_dir)
  stage_a/seed<seed>/           stage A (config.stage = pretrain), once per seed
  cells/<cell>/seed<seed>/      one pipeline run: stage A hard-linked from stage_a, then B, C
  cells/<cell>/seed<seed>/cell.json   written last: finished (a report), infeasible or failed
  results.csv  results_raw.csv  results.md  auc_vs_bytes.png   (`mec_jax.experiments.summary`)

A seed sets ``train.seed``, ``quantize.seed`` and ``compress.hash_seed``. A cell whose
``cell.json`` holds a report or ``infeasible`` is not run again, so an interrupted grid continues where it stopped and a
partial grid still gives a table. A budget a method cannot meet (e.g. QR below its ``2 sqrt(V)``
floor) is recorded as infeasible, with the reason. A finished cell is reused only while its stage
records hold the grid's settings (`workdir.changed_settings`, the keys its method reads): from
other settings (a changed sweep base or default) the grid stops with one line naming them and the
cell to delete, rather than let an old record stand for the new settings. A cell's stage B is
linked from a finished cell of the same seed that computed it with the same settings (PQ warm and
from scratch), not computed twice.

A cell that fails for any other reason (a bad override, settings that differ from the cell's
workdir, a damaged artifact, a bug) does not stop the grid: its ``cell.json`` records
``"failed": "<one line>"`` (a bug's traceback goes to ``cells/<cell>/seed<seed>/logs/``), one
line is logged, and the other cells run. A failed cell is not finished: the next run of the grid
retries it (after the cause is fixed), and a success replaces the record. A stage A that fails
skips its seed's cells the same way. The tables show failed cells as ``failed``, and the command
line exits with status 1 and one line naming them (`failures`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib.util
import os
import sys
import time
from collections.abc import Callable

from absl import logging

from mec_jax import methods, pipeline
from mec_jax import workdir as workdir_lib
from mec_jax.error_log import ErrorLog
from mec_jax.errors import BudgetError, ConfigError, MecError
from mec_jax.report import read_json, write_json_atomic


def load_sweep(path: str):
  """``(base config, seeds, overrides list, finetune)`` of a sweep file."""
  if not os.path.exists(path):
    raise ConfigError(f"{path}: no sweep file here")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path))))
  if root not in sys.path:  # sweeps do `from configs import <dataset>`
    sys.path.insert(0, root)
  spec = importlib.util.spec_from_file_location("_mec_sweep", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for name in ("get_config", "SEEDS", "SWEEP"):
    if not hasattr(module, name):
      raise ConfigError(f"{path}: a sweep file defines get_config(), SEEDS and SWEEP; no {name}")
  if not module.SWEEP or not module.SEEDS:
    raise ConfigError(f"{path}: SWEEP and SEEDS must not be empty")
  seeds, sweep = [int(s) for s in module.SEEDS], [dict(o) for o in module.SWEEP]
  return module.get_config(), seeds, sweep, bool(getattr(module, "FINETUNE", True))


def cell_name(overrides: dict) -> str:
  """A directory name for a cell, e.g. ``hash-r25`` or ``hash-init_tables=random-r25``."""
  method = overrides.get("compress.method", "pq")
  parts = [str(method)]
  for key, value in sorted(overrides.items()):
    if key not in ("compress.method", "compress.target_ratio"):
      parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
  ratio = overrides.get("compress.target_ratio", 0)
  if ratio:
    parts.append(f"r{ratio:g}")
  return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in "-".join(parts))


def seeded(config, seed: int, cache_dir: str, overrides: dict | None = None):
  """A copy of ``config`` with the seed, the shared cache and the cell's overrides."""
  out = config.copy_and_resolve_references()
  flat = {
    "train.seed": seed,
    "quantize.seed": seed,
    "compress.hash_seed": seed,
    "data.cache_dir": cache_dir,
    "train.progress": False,
  }
  for key, value in (flat | (overrides or {})).items():
    section, _, leaf = key.rpartition(".")
    node = out
    for part in section.split(".") if section else ():
      if part not in node:
        raise ConfigError(f"sweep override {key!r}: no config section {part!r}")
      node = node[part]
    if leaf not in node:
      raise ConfigError(f"sweep override {key!r}: no config key {leaf!r}")
    node[leaf] = _as_type_of(node[leaf], value, key)
  return out


def _as_type_of(current, value, key: str):
  """``value`` as the type of the key's default (``"false"`` is False for a bool key, not True)."""
  if isinstance(current, bool) and isinstance(value, str):
    if value.lower() not in ("true", "false"):
      raise ConfigError(f"sweep override {key!r}: {value!r} is not true or false")
    return value.lower() == "true"
  if isinstance(current, (int, float)) and not isinstance(current, bool):
    return type(current)(value)
  return value


def run_stage_a(config, seed: int, root: str) -> str:
  """Stage A of one seed in ``root/stage_a/seed<seed>`` (reused when finished)."""
  workdir = os.path.join(root, "stage_a", f"seed{seed}")
  done = os.path.join(workdir, "stage_a.json")
  os.makedirs(workdir, exist_ok=True)
  with _locked(os.path.join(workdir, ".running")):  # another grid process may be on this seed
    _stage_a(config, seed, root, workdir, done)
  return workdir


def _stage_a(config, seed, root, workdir, done) -> None:
  if not os.path.exists(done):
    cfg = seeded(config, seed, os.path.join(root, "cache"))
    cfg.stage = "pretrain"
    start = time.time()
    report = pipeline.run(cfg, workdir)
    write_json_atomic(done, {"seconds": time.time() - start, "full": report["full"]})


def run_cell(
  config, seed: int, overrides: dict, root: str, stage_a: str, *, finetune: bool = True
) -> dict | None:
  """One cell: stage A linked from ``stage_a``, then stages B, C (unless not ``finetune``), report.

  Returns the cell record, or None when another process is running this cell right now. A
  finished record (a report, or ``infeasible``) is read back; a ``failed`` one is run again.
  """
  workdir = os.path.join(root, "cells", cell_name(overrides), f"seed{seed}")
  done = os.path.join(workdir, "cell.json")
  if _finished(done):
    return _reused(config, seed, overrides, root, workdir, done)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, ".running"), "a") as fh:
    try:
      fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      return None
    if _finished(done):  # finished by the process that held the lock
      return _reused(config, seed, overrides, root, workdir, done)
    record = {"cell": cell_name(overrides), "seed": seed, "overrides": overrides}
    record["finetune"] = finetune
    start = time.time()
    try:
      record["report"] = _run_stages(config, seed, overrides, root, stage_a, workdir, finetune)
    except BudgetError as err:  # a budget the method cannot meet
      record["infeasible"] = str(err)
    except Exception as err:  # noqa: BLE001  (one cell's failure must not end a long grid)
      record["failed"] = failure_line(err, workdir)
    record["seconds"] = time.time() - start
    stage_a_done = os.path.join(stage_a, "stage_a.json")
    if os.path.exists(stage_a_done):
      record["stage_a_seconds"] = read_json(stage_a_done)["seconds"]
    write_json_atomic(done, record)
    return record


def _reused(config, seed, overrides, root, workdir, done) -> dict:
  """The finished record ``done``, if the cell's stage records hold this grid's settings.

  Raises:
    ConfigError: the cell was computed with other settings (a changed sweep file or default),
      naming them; its record would otherwise stand for a computation it is not.
  """
  cfg = seeded(config, seed, os.path.join(root, "cache"), overrides)
  keys = methods.get(cfg.compress.method).config_keys
  changed = workdir_lib.changed_settings(cfg, workdir, keys)
  if changed:
    more = f"; and {len(changed) - 3} more" if len(changed) > 3 else ""
    raise ConfigError(
      f"{done} was computed with other settings ({'; '.join(changed[:3])}{more}); "
      f"delete {workdir} to recompute the cell, or use another grid directory"
    )
  return read_json(done)


def _finished(done: str) -> bool:
  """Whether the cell record at ``done`` exists and is final (a report or infeasible)."""
  return os.path.exists(done) and "failed" not in read_json(done)


def _run_stages(config, seed, overrides, root, stage_a, workdir, finetune) -> dict:
  """The pipeline stages of one cell in ``workdir``; the report."""
  cfg = seeded(config, seed, os.path.join(root, "cache"), overrides)
  workdir_lib.link_stage(stage_a, workdir)
  _share_stage_b(cfg, root, seed, workdir)
  if finetune:
    return pipeline.run(cfg, workdir)
  cfg.stage = "quantize"  # stage B, then the report of the swap-in model
  pipeline.run(cfg, workdir)
  cfg.stage = "report"
  return pipeline.run(cfg, workdir)


def _share_stage_b(cfg, root: str, seed: int, workdir: str) -> None:
  """Links into ``workdir`` the stage B of a finished cell of the same seed that computed it with
  the same settings (PQ warm-started and from scratch: PQ's stage B reads no protocol key,
  `methods.Method.config_keys`), so a grid computes it once, as ``compress.method=auto`` does."""
  records = sorted(glob.glob(os.path.join(root, "cells", "*", f"seed{seed}", "cell.json")))
  finished = [os.path.dirname(p) for p in records if "report" in read_json(p)]
  keys = methods.get(cfg.compress.method).config_keys
  workdir_lib.link_same_stage(cfg, finished, workdir, "quantize", keys)


def failure_line(err: Exception, workdir: str) -> str:
  """One line for a failed cell or stage A: a `MecError`'s message (it names the cause), or for
  anything else (a bug) its type and message plus the log file that holds its traceback."""
  if isinstance(err, MecError):
    return " ".join(str(err).split())
  path = ErrorLog(workdir).exception("grid cell", err)
  text = " ".join(f"{type(err).__name__}: {err}".split())[:300]
  return text + (f" (traceback: {path})" if path else "")


@contextlib.contextmanager
def _locked(path: str | None):
  """Holds an exclusive ``flock`` on ``path`` (a machine-wide lock for heavy runs), if given."""
  if not path:
    yield
    return
  with open(path, "a") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(fh, fcntl.LOCK_UN)


def run_grid(
  sweep_path: str,
  root: str,
  *,
  only: Callable[[dict], bool] | None = None,
  seeds: list[int] | None = None,
  lock: str | None = None,
) -> list[dict]:
  """Runs (or resumes) every cell of a sweep; returns the cell records, then writes the table.

  Args:
    sweep_path: the sweep file.
    root: the grid's workdir.
    only: keep the cells whose overrides it accepts (default: all).
    seeds: run these seeds instead of the file's ``SEEDS``.
    lock: a file to ``flock`` around each stage A and each cell, so that a long grid takes
      turns with other heavy jobs on a shared machine instead of holding them off for hours.
  """
  from mec_jax.experiments import summary  # plots import matplotlib; keep it off the import path

  config, file_seeds, sweep, finetune = load_sweep(sweep_path)
  cells = [o for o in sweep if only is None or only(o)]
  records = []
  for seed in seeds or file_seeds:  # seeds outermost: a partial grid has every cell at seed 1
    try:
      with _locked(lock):
        stage_a = run_stage_a(config, seed, root)
    except Exception as err:  # noqa: BLE001  (the other seeds may still run)
      workdir = os.path.join(root, "stage_a", f"seed{seed}")
      record = {
        "cell": "stage_a",
        "seed": seed,
        "overrides": {},
        "failed": failure_line(err, workdir),
      }
      logging.warning("stage A seed %d failed, its cells skipped: %s", seed, record["failed"])
      records.append(record)
      continue
    for overrides in cells:
      with _locked(lock):
        record = run_cell(config, seed, overrides, root, stage_a, finetune=finetune)
      if record is None:  # being run by another process
        continue
      records.append(record)
      logging.warning("cell %s seed %d: %s", record["cell"], seed, summary.one_line(record))
      summary.write(root, config, records_on_disk(root))
  return records


def failures(records: list[dict]) -> str:
  """One line naming the failed cells (and stage A seeds) of ``records``; ``""`` when none."""
  failed = [f"{r['cell']} seed {r['seed']}" for r in records if "failed" in r]
  if not failed:
    return ""
  return (
    f"{len(failed)} failed: {', '.join(failed)} (the reasons are in cells/<cell>/seed<seed>/"
    "cell.json; a rerun retries them)"
  )


def records_on_disk(root: str) -> list[dict]:
  """Every finished cell record under ``root/cells``."""
  out = []
  cells = os.path.join(root, "cells")
  for cell in sorted(os.listdir(cells)) if os.path.isdir(cells) else ():
    for seed_dir in sorted(os.listdir(os.path.join(cells, cell))):
      path = os.path.join(cells, cell, seed_dir, "cell.json")
      if os.path.exists(path):
        out.append(read_json(path))
  return out
