"""Loading and running an exported model (`mec_jax.export.load`): jax and numpy only.

An export directory (written by `mec_jax.export.writer.export_model`)::

  manifest.json    fields (names, vocab sizes, table kinds), parameter names/shapes, bytes,
                   a summary of the program's signature (`mec_jax.export.program`), provenance
  model.stablehlo  the forward pass ``(*params, ids [b, F], values [b, F]) -> logits [b]``:
                   a `jax.export` serialization (StableHLO + signature) with a symbolic
                   batch dimension ``b``
  params.npz       every array of the model in program order (codes, codebooks, dense layers)

Nothing here imports flax or the training code, so a serving process holds only the program,
the arrays and jax.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from mec_jax.errors import ArtifactError
from mec_jax.export import program

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROGRAM = "model.stablehlo"
PARAMS = "params.npz"


class ServedModel:
  """A loaded export: ``model(ids, values) -> logits [batch]`` for any batch size.

  Attributes:
    manifest: the parsed ``manifest.json``.
    field_names: the F input fields in column order of ``ids``/``values``.
    vocab_sizes: ids per field; out-of-range ids fall back to the field's OOV id (the last one)
      in compressed fields and are clipped in full ones, exactly as in training.
  """

  def __init__(self, exported, params: list[jax.Array], manifest: dict):
    self._exported = exported
    self._call = jax.jit(exported.call)  # one compiled program per batch size, cheap dispatch
    self._params = params
    self.manifest = manifest
    self.field_names = [f["name"] for f in manifest["fields"]]
    self.vocab_sizes = [int(f["vocab_size"]) for f in manifest["fields"]]

  @property
  def num_fields(self) -> int:
    return len(self.field_names)

  @property
  def param_bytes(self) -> int:
    """Bytes of every array the model holds (what serving keeps resident besides jax)."""
    return int(sum(p.nbytes for p in self._params))

  def __call__(self, ids, values=None) -> jax.Array:
    """Logits of a batch.

    Args:
      ids: int ``[batch, num_fields]`` ids in the dataset's encoding (`mec_jax.data.schema`).
      values: float ``[batch, num_fields]`` (1.0 for categorical fields, the normalized number
        for numeric ones); ``None`` means all ones.

    Returns:
      float32 ``[batch]`` logits (apply a sigmoid for click probabilities).
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] != self.num_fields:
      raise ValueError(f"ids has shape {ids.shape}, expected [batch, {self.num_fields}]")
    if not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    values = np.ones(ids.shape, np.float32) if values is None else np.asarray(values)
    if values.shape != ids.shape:
      raise ValueError(f"values has shape {values.shape}, expected ids' shape {ids.shape}")
    return self._call(*self._params, jnp.asarray(ids, jnp.int32), jnp.asarray(values, jnp.float32))


def read_manifest(directory: str) -> dict:
  """The parsed ``manifest.json`` of an export directory (ArtifactError when absent or foreign)."""
  path = os.path.join(directory, MANIFEST)
  if not os.path.isfile(path):
    raise ArtifactError(
      f"{path}: no exported model here (expected {MANIFEST}, {PROGRAM}, {PARAMS})"
    )
  with open(path) as fh:
    manifest = json.load(fh)
  if manifest.get("format_version") != FORMAT_VERSION:
    raise ArtifactError(
      f"{path}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}"
    )
  return manifest


def load(directory: str) -> ServedModel:
  """Loads an export directory (e.g. ``<workdir>/export``) for serving.

  Raises:
    ArtifactError: missing files, another format version, or parameters that do not match the
      program's signature (names the file and the array).
  """
  manifest = read_manifest(directory)
  exported = program.read_program(os.path.join(directory, PROGRAM))
  params_path = os.path.join(directory, PARAMS)
  if not os.path.isfile(params_path):
    raise ArtifactError(f"{params_path}: missing (the arrays of the exported model)")
  specs, avals = manifest["params"], exported.in_avals[:-2]  # the last two: ids, values
  if len(specs) != len(avals):
    raise ArtifactError(
      f"{params_path}: manifest lists {len(specs)} arrays, the program takes {len(avals)}"
    )
  params = []
  with np.load(params_path) as arrays:
    for spec, aval in zip(specs, avals, strict=True):
      if spec["key"] not in arrays:
        raise ArtifactError(f"{params_path}: no array {spec['key']!r} ({spec['path']})")
      array = arrays[spec["key"]]
      if array.shape != aval.shape or array.dtype != aval.dtype:
        raise ArtifactError(
          f"{params_path}: {spec['key']} ({spec['path']}) is {array.dtype}{list(array.shape)}, "
          f"the program expects {aval.dtype}{list(aval.shape)}"
        )
      params.append(jnp.asarray(array))
  return ServedModel(exported, params, manifest)
