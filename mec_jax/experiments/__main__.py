r"""Command line: ``python -m mec_jax.experiments --config=configs/sweeps/<name>.py --workdir=DIR``.

Runs (or resumes) every cell of the sweep and writes ``DIR/results.{csv,md}``,
``DIR/results_raw.csv`` and ``DIR/auc_vs_bytes.png``. ``--methods=pq,hash`` keeps some methods,
``--seeds=2024,2025`` overrides the file's seeds, ``--summary_only`` rewrites the table from the
finished cells without running anything.

A cell that fails (any error but an infeasible budget) does not stop the grid: it is recorded as
failed and retried by the next run. After the table, the command prints ``error: <n> failed:
<cell> seed <seed>, ...`` on stderr and exits with status 1 when a cell or stage A failed; a bad
sweep file or flag exits with status 2.
"""

from __future__ import annotations

import logging as py_logging
import os
import sys

from absl import app, flags, logging

_CONFIG = flags.DEFINE_string("config", None, "Sweep file (configs/sweeps/<name>.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory of the grid.")
_METHODS = flags.DEFINE_list("methods", [], "Run only these compress.method values.")
_SEEDS = flags.DEFINE_list("seeds", [], "Seeds to run instead of the sweep file's SEEDS.")
_LOCK = flags.DEFINE_string("lock", "", "flock this file around each cell (shared machines).")
_SUMMARY_ONLY = flags.DEFINE_bool("summary_only", False, "Only rewrite the table and plot.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from mec_jax.experiments import runner, summary

  logging.set_verbosity(logging.WARNING)
  logging.get_absl_handler().addFilter(lambda r: r.levelno >= py_logging.WARNING)
  failed = ""
  try:
    if _SUMMARY_ONLY.value:
      config = runner.load_sweep(_CONFIG.value)[0]
      summary.write(_WORKDIR.value, config, runner.records_on_disk(_WORKDIR.value))
    else:
      methods = set(_METHODS.value)
      records = runner.run_grid(
        _CONFIG.value,
        _WORKDIR.value,
        only=(lambda o: o.get("compress.method", "pq") in methods) if methods else None,
        seeds=[int(s) for s in _SEEDS.value] or None,
        lock=_LOCK.value or None,
      )
      failed = runner.failures(records)
  except ValueError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
  results = f"{_WORKDIR.value}/results.md"
  if os.path.exists(results):  # absent when every cell's stage A failed
    with open(results) as fh:
      print(fh.read())
  if failed:
    print(f"error: {failed}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
