r"""Command line: ``python -m mec_jax.main --config=<name or file.py> --workdir=DIR``.

Runs pretrain -> quantize -> finetune -> report -> export (or one ``--config.stage``) and writes
``DIR/report.json`` and ``DIR/report.md``. ``--config`` is a built-in name (`mec_jax.configs`:
``synthetic``, ``frappe``, ``kuairand``, ..., usable from any directory) or a config file. Any
config key can be overridden, e.g. ``--config.quantize.codebook_size=512``.

Every expected failure (a bad flag or config key, a bad path, a full disk, damaged artifacts,
bad data, settings that cannot work, a work directory in use) ends the run with ONE line
``error: ...`` on stderr and exit status 2. Tracebacks never reach the terminal: those of
background threads (Orbax, asyncio) go to ``<workdir>/logs/error-<time>.log`` (`error_log`), and
the line names that file when it was written; a bug ends in ``error: internal error ...`` naming
the file with its traceback, exit status 1. Ctrl-C (or SIGTERM) ends in ``error: interrupted;
rerun the same command to resume``, exit status 130 (143).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging as py_logging
import os
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mec_jax import configs, error_log
from mec_jax.errors import one_line

_HELP = ("--help", "-h", "--helpshort", "--helpfull", "--helpxml", "-?")


def _config_file(value: str) -> str:
  """``--config``'s value with a built-in name (``kuairand``, optionally ``kuairand:ARG``) turned
  into the path of the file shipped in `mec_jax.configs`; an existing file stays as it is."""
  path, sep, arg = value.partition(":")
  if os.path.isfile(path):
    return value
  names = configs.builtin_names()
  if path in names:
    return os.path.join(os.path.dirname(configs.__file__), f"{path}.py") + sep + arg
  raise ValueError(
    f"--config={value}: no such file and not a built-in config; built-in: {', '.join(names)} "
    "(or a path to a config file)"
  )


def _resolve_config(argv: list[str]) -> list[str]:
  """``argv`` with ``--config``'s built-in name resolved (`_config_file`); ValueError when
  ``--config`` is missing (unless help is asked for)."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      argv[i] = "--config=" + _config_file(arg.split("=", 1)[1])
      return argv
    if arg == "--config" and i + 1 < len(argv):
      argv[i + 1] = _config_file(argv[i + 1])
      return argv
  if any(arg in _HELP for arg in argv):
    return argv
  raise ValueError(
    f"--config is required: a built-in config ({', '.join(configs.builtin_names())}) "
    "or a path to a config file, e.g. --config=synthetic --workdir=DIR"
  )


def _quiet_libraries(record) -> bool:
  # Orbax logs every checkpoint read/write at INFO, and a failed async write as pages of
  # asyncio tracebacks at ERROR that `Checkpointer` re-raises as one ArtifactError: keep only
  # its warnings.
  return "orbax" not in record.pathname or record.levelno == py_logging.WARNING


def _choose_platforms() -> None:
  """Without libtpu, tells JAX not to probe for a TPU (which logs "Unable to initialize backend
  'tpu'"): JAX_PLATFORMS becomes ``cuda,cpu`` / ``rocm,cpu`` when that plugin is installed, else
  ``cpu``. An explicit JAX_PLATFORMS, a libtpu install or an unknown plugin are left alone."""
  if "JAX_PLATFORMS" in os.environ or importlib.util.find_spec("libtpu") is not None:
    return
  plugins = {entry.name for entry in importlib.metadata.entry_points(group="jax_plugins")}
  if importlib.util.find_spec("jax_plugins") is not None:
    import pkgutil

    import jax_plugins

    plugins |= {module.name for module in pkgutil.iter_modules(jax_plugins.__path__)}
  kinds = sorted({kind for p in plugins for kind in ("cuda", "rocm") if kind in p})
  if all(any(kind in p for kind in kinds) for p in plugins):  # no plugin of an unknown kind
    os.environ["JAX_PLATFORMS"] = ",".join([*kinds, "cpu"])


def _fail(err: BaseException, log=None) -> None:
  """Prints ``error: <err>`` (and where the run's error log is, if it has one); exits 2."""
  where = f" (tracebacks in {log.path})" if log is not None and log.path else ""
  _exit(2, f"error: {one_line(err)}{where}")


def _exit(status: int, line: str) -> None:
  """Prints ``line`` on stderr and ends the process with ``status``.

  ``os._exit``, after flushing: the interpreter's shutdown, with Orbax's and TensorStore's
  threads still alive after a failure, could abort (exit status 134, "Fatal Python error").
  Everything a run keeps is already on disk (atomic writes; the training loop closed its
  checkpointer on the way out).
  """
  logging.flush()
  sys.stdout.flush()
  print(line, file=sys.stderr, flush=True)
  os._exit(status)


class _Terminated(KeyboardInterrupt):
  """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


def _on_sigterm(signum, frame) -> None:
  raise _Terminated


def _interrupted(err: KeyboardInterrupt, log) -> None:
  signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # a second Ctrl-C: out at once
  status = 143 if isinstance(err, _Terminated) else 130
  what = "terminated" if isinstance(err, _Terminated) else "interrupted"
  where = f" (tracebacks in {log.path})" if log.path else ""
  _exit(status, f"error: {what}; rerun the same command to resume{where}")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with ``--config=<built-in name>`` resolved, and a missing or unknown
  config, a config file that does not load, or a bad flag or config key (ml_collections already
  suggests the right one) as one line and exit status 2 instead of a traceback."""
  try:
    argv = _resolve_config(argv)
    return flags.FLAGS(argv)
  except flags.Error as err:
    _fail(err)
  except SyntaxError as err:  # the config file itself (absl only wraps ValueError/TypeError)
    _fail(SyntaxError(f"--config: {err.filename}, line {err.lineno}: {err.msg}"))
  except ImportError as err:
    _fail(
      ImportError(
        f"--config: {one_line(err)} (a config of your own imports the built-ins as "
        "`from mec_jax.configs import default`)"
      )
    )
  except (AttributeError, KeyError, ValueError, TypeError, OSError) as err:
    while isinstance(err, AttributeError) and err.args and isinstance(err.args[0], KeyError):
      err = err.args[0]  # ml_collections wraps the KeyError that holds "Did you mean ..."
    if isinstance(err, KeyError):
      text = one_line(err)  # "'codebok_size' Did you mean "codebook_size" instead of ...?"
      key = text.split("'")[1] if text.count("'") >= 2 else text
      flag = next((a.split("=")[0] for a in argv if a.startswith("--config.") and key in a), "")
      hint = text.split("' ", 1)[1] if "' " in text else ""
      err = KeyError(f"{flag or '--config'}: no config key {key!r}. {hint}".strip())
    _fail(err)


_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "A built-in config name (mec_jax/configs/<name>.py: synthetic, frappe, criteo, ...) or the path "
  "to a config file.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for artifacts, checkpoints and reports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _choose_platforms()
  from mec_jax import pipeline  # Imported late so `--help` stays fast.
  from mec_jax.train import distributed

  log = error_log.ErrorLog(_WORKDIR.value)
  log.install()
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(log.logging_filter)
  logging.get_absl_handler().addFilter(_quiet_libraries)
  signal.signal(signal.SIGTERM, _on_sigterm)
  try:
    distributed.initialize_from_config(_CONFIG.value)  # before anything touches a device
    report = pipeline.run(_CONFIG.value, _WORKDIR.value)
    if report is not None and distributed.is_writer():
      print(pipeline.summarize(report))
    if log.path:  # the run succeeded, but a thread or a library reported an error on the way
      print(f"warning: errors of background threads were logged to {log.path}", file=sys.stderr)
  except KeyboardInterrupt as err:
    _interrupted(err, log)
  except (ValueError, OSError, FloatingPointError) as err:  # MecError is a ValueError
    _fail(err, log)
  except Exception as err:  # noqa: BLE001  (a bug: one line, the traceback in the log)
    path = log.exception("internal error", err)
    where = f"traceback in {path}" if path else "no traceback could be written"
    _exit(1, f"error: internal error {type(err).__name__}: {one_line(err)} ({where}; a bug)")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
