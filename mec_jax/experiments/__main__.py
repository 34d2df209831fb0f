r"""Command line: ``python -m mec_jax.experiments --config=configs/sweeps/<name>.py --workdir=DIR``.

Runs (or resumes) every cell of the sweep and writes ``DIR/results.{csv,md}``,
``DIR/results_raw.csv`` and ``DIR/auc_vs_bytes.png``. ``--methods=pq,hash`` keeps some methods,
``--seeds=2024,2025`` overrides the file's seeds, ``--summary_only`` rewrites the table from the
finished cells without running anything.
"""

from __future__ import annotations

import logging as py_logging
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
  try:
    if _SUMMARY_ONLY.value:
      config = runner.load_sweep(_CONFIG.value)[0]
      summary.write(_WORKDIR.value, config, runner.records_on_disk(_WORKDIR.value))
    else:
      methods = set(_METHODS.value)
      runner.run_grid(
        _CONFIG.value,
        _WORKDIR.value,
        only=(lambda o: o.get("compress.method", "pq") in methods) if methods else None,
        seeds=[int(s) for s in _SEEDS.value] or None,
        lock=_LOCK.value or None,
      )
  except ValueError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
  with open(f"{_WORKDIR.value}/results.md") as fh:
    print(fh.read())


if __name__ == "__main__":
  app.run(main)
