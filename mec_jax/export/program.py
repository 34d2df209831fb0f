"""A `jax.export.Exported` to and from a file, with jax's own serialization.

``Exported.serialize()`` writes the portable StableHLO artifact together with its calling
signature (symbolic shapes, dtypes, platforms, calling-convention version) as a flatbuffer;
`jax.export.deserialize` reads it back on any jaxlib that still supports that calling-convention
version (jax keeps several versions of backward compatibility). The manifest keeps a short,
human-readable summary of the signature beside it.

Imports jax only.
"""

from __future__ import annotations

import jax
from jax import export

from mec_jax.errors import ArtifactError


def program_summary(exported: export.Exported) -> dict:
  """JSON-able description of ``exported``'s signature, for the manifest (not read back)."""
  return {
    "serialization": "jax.export",
    "fun_name": exported.fun_name,
    "in_avals": [str(a) for a in exported.in_avals],
    "out_avals": [str(a) for a in exported.out_avals],
    "platforms": list(exported.platforms),
    "calling_convention_version": exported.calling_convention_version,
    "jax_version": jax.__version__,
  }


def write_program(exported: export.Exported, program_path: str) -> dict:
  """Writes ``exported`` (serialized) to ``program_path``; returns its summary for the manifest."""
  with open(program_path, "wb") as fh:
    fh.write(exported.serialize())
  return program_summary(exported)


def read_program(program_path: str) -> export.Exported:
  """The `Exported` that `write_program` wrote (callable with ``.call(*args)``).

  Raises:
    ArtifactError: naming the file when it is missing or does not deserialize (damaged, or
      written by a jax whose calling convention this jaxlib no longer runs).
  """
  try:
    with open(program_path, "rb") as fh:
      data = fh.read()
    return export.deserialize(bytearray(data))
  except (OSError, ValueError, TypeError, IndexError) as err:  # flatbuffers raises plain errors
    raise ArtifactError(
      f"{program_path}: cannot read the exported program ({type(err).__name__}: {err}); "
      "export again with --config.stage=export"
    ) from err
