r"""Command line: ``python -m mec_jax.main --config=configs/<name>.py --workdir=DIR``.

Runs pretrain -> quantize -> finetune -> report -> export (or one ``--config.stage``) and writes
``DIR/report.json`` and ``DIR/report.md``. Any config key can be overridden, e.g.
``--config.quantize.codebook_size=512``.
"""

from __future__ import annotations

import logging as py_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags


def _make_configs_importable(argv: list[str]) -> None:
  # Dataset configs do `from configs import default`; make that work from any working directory.
  for i, arg in enumerate(argv):
    path = None
    if arg.startswith("--config="):
      path = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
    if path:
      root = os.path.dirname(os.path.dirname(os.path.abspath(path.split(":", 1)[0])))
      if root not in sys.path:
        sys.path.insert(0, root)


_make_configs_importable(sys.argv)


def _quiet_libraries(record) -> bool:
  # Orbax logs every checkpoint read/write at INFO; keep its warnings, drop the chatter.
  return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Path to a config file (configs/<name>.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for artifacts, checkpoints and reports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from mec_jax import pipeline  # Imported late so `--help` stays fast.

  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_quiet_libraries)
  try:
    report = pipeline.run(_CONFIG.value, _WORKDIR.value)
  except ValueError as err:  # Bad input: one clear line, no traceback.
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
  if report is not None:
    print(pipeline.summarize(report))


if __name__ == "__main__":
  app.run(main)
