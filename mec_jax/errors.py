"""The exception type of every expected failure in mec_jax.

Bad settings, bad input files and damaged artifacts raise `MecError` (or a subclass) with a
one-line message that names the offending file, field, config key or value and says what was
expected. The CLI (`mec_jax.main`) prints such an error as one line on stderr and exits with
status 2; anything else is a bug and keeps its traceback.

This module imports nothing, so every part of the package (``data`` and ``compression``
included) may raise these types without breaking the one-way direction of imports.
`MecError` subclasses ``ValueError``, so callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations


class MecError(ValueError):
  """Bad settings or input: the message names the cause and what was expected."""


class ConfigError(MecError):
  """A config key holds a value that cannot work (names the ``config.<key>`` and the choices)."""


class DataError(MecError):
  """An input data file is missing or malformed (names the file, line, field and value)."""


class ArtifactError(MecError):
  """A file mec_jax wrote earlier (cache entry, stage artifact, checkpoint) is missing, damaged
  or was computed with other settings (names the file and what to do)."""
