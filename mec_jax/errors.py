"""The exception type of every expected failure in mec_jax.

Bad settings, bad input files and damaged artifacts raise `MecError` (or a subclass) with a
one-line message that names the offending file, field, config key or value and says what was
expected. The CLI (`mec_jax.main`) prints such an error as one line on stderr and exits with
status 2; anything else is a bug: one line too, naming the log file that holds its traceback
(`mec_jax.error_log`), and exit status 1.

This module imports nothing, so every part of the package (``data`` and ``compression``
included) may raise these types without breaking the one-way direction of imports.
`MecError` subclasses ``ValueError``, so callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations


class MecError(ValueError):
  """Bad settings or input: the message names the cause and what was expected."""


class ConfigError(MecError):
  """A config key holds a value that cannot work (names the ``config.<key>`` and the choices)."""


class BudgetError(ConfigError):
  """``compress.target_ratio`` asks for fewer bytes than any setting of the method can use
  (the experiment runner records such a cell as infeasible instead of failing the grid)."""


class DataError(MecError):
  """An input data file is missing or malformed (names the file, line, field and value)."""


class BusyError(MecError):
  """The work directory is in use by another run (names it and the other process)."""


class ArtifactError(MecError):
  """A file mec_jax wrote earlier (cache entry, stage artifact, checkpoint) is missing, damaged
  or was computed with other settings (names the file and what to do)."""


def root_cause(err: BaseException) -> BaseException:
  """The innermost exception behind ``err``: follows ``__cause__``/``__context__`` and the first
  member of exception groups (what Orbax's background threads and asyncio wrap errors in)."""
  seen = set()
  while id(err) not in seen:
    seen.add(id(err))
    inner = getattr(err, "exceptions", None)  # ExceptionGroup
    if inner:
      err = inner[0]
    elif err.__cause__ is not None:
      err = err.__cause__
    elif err.__context__ is not None and not err.__suppress_context__:
      err = err.__context__
    else:
      break
  return err


def one_line(err: BaseException) -> str:
  """``err`` as one line: an `OSError` as ``<path>: <reason>``, any other error's text with its
  line breaks folded (ml_collections' and Orbax's messages span several lines)."""
  if isinstance(err, OSError) and err.strerror:
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror} [errno {err.errno}]"
  text = str(err)
  if isinstance(err, KeyError) and err.args:  # str(KeyError) is the repr of its message
    text = str(err.args[0])
  return " ".join(text.split()) or type(err).__name__
