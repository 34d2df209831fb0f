"""A `jax.export.Exported` to and from files: StableHLO bytecode plus a small JSON header.

``Exported.serialize()`` needs the optional ``flatbuffers`` package, which a serving host may
lack; this module writes the same content without it. The program file holds the portable
StableHLO artifact (``Exported.mlir_module_serialized``, versioned by its calling convention, so
newer jaxlibs keep running it); the header holds the abstract signature (shapes with symbolic
dimensions as strings, dtypes, platforms) that `read_program` rebuilds the `Exported` from.
Only what `mec_jax.export.writer` exports is supported: one device, no effects, flat inputs.

Imports jax and numpy only.
"""

from __future__ import annotations

import jax
import numpy as np
from jax import export

from mec_jax.errors import ArtifactError

HEADER_VERSION = 1


def _shape_str(shape) -> str:
  return ", ".join(str(d) for d in shape)


def program_header(exported: export.Exported) -> dict:
  """JSON-able description of ``exported``'s signature (everything but the StableHLO bytes)."""
  if exported.nr_devices != 1 or exported.ordered_effects or exported.unordered_effects:
    raise ArtifactError(
      f"{exported.fun_name}: only single-device programs without effects are written "
      f"(nr_devices={exported.nr_devices}, effects={exported.ordered_effects})"
    )
  if exported.in_tree != _flat_tree(len(exported.in_avals)):
    raise ArtifactError(
      f"{exported.fun_name}: expected flat positional inputs, got {exported.in_tree}"
    )
  if exported.out_tree != jax.tree.structure(0):
    raise ArtifactError(f"{exported.fun_name}: expected one output array, got {exported.out_tree}")
  return {
    "header_version": HEADER_VERSION,
    "fun_name": exported.fun_name,
    "in_tree": "flat",
    "in_avals": [[_shape_str(a.shape), str(a.dtype)] for a in exported.in_avals],
    "out_avals": [[_shape_str(a.shape), str(a.dtype)] for a in exported.out_avals],
    "platforms": list(exported.platforms),
    "calling_convention_version": exported.calling_convention_version,
    "module_kept_var_idx": list(exported.module_kept_var_idx),
    "uses_global_constants": bool(exported.uses_global_constants),
    "jax_version": jax.__version__,
  }


def _flat_tree(num_inputs: int):
  return jax.tree.structure(((0,) * num_inputs, {}))


def write_program(exported: export.Exported, program_path: str) -> dict:
  """Writes the StableHLO bytes to ``program_path``; returns the header (for the manifest)."""
  header = program_header(exported)
  with open(program_path, "wb") as fh:
    fh.write(exported.mlir_module_serialized)
  return header


def read_program(header: dict, program_path: str) -> export.Exported:
  """Rebuilds the `Exported` that `write_program` wrote (callable with ``.call(*args)``)."""
  if header.get("header_version") != HEADER_VERSION:
    raise ArtifactError(
      f"{program_path}: program header version {header.get('header_version')!r}, "
      f"this mec_jax reads {HEADER_VERSION}"
    )
  with open(program_path, "rb") as fh:
    module = fh.read()
  scope = export.SymbolicScope()

  def aval(spec):
    shape, dtype = spec
    return jax.core.ShapedArray(export.symbolic_shape(shape, scope=scope), np.dtype(dtype))

  in_avals = tuple(aval(a) for a in header["in_avals"])
  out_avals = tuple(aval(a) for a in header["out_avals"])
  n_in, n_out = len(in_avals), len(out_avals)
  return export.Exported(
    fun_name=header["fun_name"],
    in_tree=_flat_tree(n_in),
    in_avals=in_avals,
    out_tree=jax.tree.structure(0),
    out_avals=out_avals,
    _has_named_shardings=True,
    _in_named_shardings=(None,) * n_in,
    _out_named_shardings=(None,) * n_out,
    in_shardings_hlo=(None,) * n_in,
    out_shardings_hlo=(None,) * n_out,
    nr_devices=1,
    platforms=tuple(header["platforms"]),
    ordered_effects=(),
    unordered_effects=(),
    disabled_safety_checks=(),
    mlir_module_serialized=module,
    calling_convention_version=int(header["calling_convention_version"]),
    module_kept_var_idx=tuple(header["module_kept_var_idx"]),
    uses_global_constants=bool(header["uses_global_constants"]),
    _get_vjp=None,
  )
