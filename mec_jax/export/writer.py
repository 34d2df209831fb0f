"""Writing servable artifacts from an in-memory model (needs flax; serving does not).

* `export_model`: the eval-mode forward pass of any backbone, exported with `jax.export` for a
  symbolic batch size, plus its arrays, into a directory `mec_jax.export.load` reads.
* `save_tables`: the compressed tables of a model as files of their method's artifact
  (``finetune/tables/<field>.npz``), the product of stage C.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import export

from mec_jax import digest, methods
from mec_jax.export import program, serving
from mec_jax.layers import CodebookEmbed
from mec_jax.layers.embed import Embed


def _table_kind(table) -> str:
  if isinstance(table, CodebookEmbed):
    return "codebook"
  return "full" if isinstance(table, Embed) else type(table).__name__


def export_model(
  model: nnx.Module,
  directory: str,
  *,
  field_names: Sequence[str],
  platforms: Sequence[str] = ("cpu",),
  meta: Mapping | None = None,
  preprocess: tuple[dict, Mapping[str, np.ndarray]] | None = None,
) -> str:
  """Exports ``model(ids, values) -> logits`` (eval mode) into ``directory``, atomically.

  The arrays (`nnx.Param`, batch statistics, `Codes`) become inputs of the program, so it holds
  no weights and the codes keep their stored dtype (uint8 for K <= 256). RNG state is baked in as
  constants (eval mode draws nothing). The directory is first written beside itself, then swapped
  in, so a reader never sees half an export. Leaves ``model`` in eval mode. Cost: every array is
  written once (`params.npz`, uncompressed: a 33M x 40 float32 table is 5.3 GB); lowering never
  touches the values.

  Args:
    model: a backbone over a `FieldEmbedding` (``model.embedding.tables``).
    directory: target, replaced if it exists.
    field_names: the F fields, in column order of ``ids``.
    platforms: `jax.export` lowering platforms (``"cpu"``, ``"cuda"``, ``"tpu"``).
    meta: JSON-able provenance stored in the manifest (run, source, metrics, ...).
    preprocess: ``(spec, arrays)`` of `mec_jax.data.preprocess.build` (the raw-value
      vocabularies and numeric transforms), written as the manifest's ``preprocess`` section
      and ``vocab.npz`` so the export serves raw rows (`ServedModel.predict_raw`); ``None``:
      ids only.

  Returns:
    ``directory``.
  """
  tables = list(model.embedding.tables)
  if len(field_names) != len(tables):
    raise ValueError(f"export_model: {len(field_names)} field names for {len(tables)} tables")
  model.eval()
  graphdef, rng_state, arrays = nnx.split(model, nnx.RngState, ...)
  leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(arrays)
  leaves = [leaf for _, leaf in leaves_with_paths]
  num_fields = len(tables)

  def forward(*inputs):
    *params, ids, values = inputs
    merged = nnx.merge(graphdef, rng_state, jax.tree.unflatten(treedef, params))
    return merged(ids, values)

  (batch,) = export.symbolic_shape("batch")
  specs = [jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in leaves] + [
    jax.ShapeDtypeStruct((batch, num_fields), jnp.int32),
    jax.ShapeDtypeStruct((batch, num_fields), jnp.float32),
  ]
  exported = export.export(jax.jit(forward), platforms=tuple(platforms))(*specs)

  tmp = directory.rstrip(os.sep) + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  header = program.write_program(exported, os.path.join(tmp, serving.PROGRAM))
  names = [f"a{i:04d}" for i in range(len(leaves))]
  host = [np.asarray(x) for x in leaves]
  np.savez(os.path.join(tmp, serving.PARAMS), **dict(zip(names, host, strict=True)))
  manifest = {
    "format_version": serving.FORMAT_VERSION,
    "fields": [
      {
        "name": name,
        "vocab_size": int(t.vocab_size),
        "oov_id": int(getattr(t, "oov_id", t.vocab_size - 1)),
        "table": _table_kind(t),
      }
      for name, t in zip(field_names, tables, strict=True)
    ],
    "params": [
      {
        "key": key,
        "path": jax.tree_util.keystr(path),
        "shape": list(x.shape),
        "dtype": str(x.dtype),
        "sha256": digest.array_sha256(x),
      }
      for key, (path, _), x in zip(names, leaves_with_paths, host, strict=True)
    ],
    "param_bytes": int(sum(x.nbytes for x in host)),
    "program": header,
    "preprocess": _write_preprocess(tmp, field_names, preprocess),
    "meta": dict(meta or {}),
  }
  with open(os.path.join(tmp, serving.PROGRAM), "rb") as fh:
    manifest = serving.seal_manifest(manifest, fh.read())
  with open(os.path.join(tmp, serving.MANIFEST), "w") as fh:
    json.dump(manifest, fh, indent=1)
  if os.path.exists(directory):
    shutil.rmtree(directory)
  os.replace(tmp, directory)
  return directory


def _write_preprocess(directory: str, field_names, preprocess) -> dict | None:
  """Writes ``vocab.npz``; returns the manifest's ``preprocess`` section (with the digests)."""
  if preprocess is None:
    return None
  spec, arrays = preprocess
  names = [f["name"] for f in spec["fields"]]
  if names != list(field_names):
    raise ValueError(f"export_model: preprocess describes fields {names}, the model {field_names}")
  arrays = {key: np.asarray(a) for key, a in arrays.items()}
  np.savez(os.path.join(directory, serving.VOCAB), **arrays)
  return dict(spec) | {"sha256": {key: digest.array_sha256(a) for key, a in arrays.items()}}


def save_tables(
  model: nnx.Module,
  field_names: Sequence[str],
  path_of: Callable[[str], str],
  stage_b: Mapping[str, methods.Artifact],
  **stats,
) -> dict[str, methods.Artifact]:
  """Writes the compressed tables of ``model`` as artifacts of their method (atomically each).

  Args:
    model: a backbone over a `FieldEmbedding` whose compressed fields are the layers of
      ``stage_b``'s artifacts (``to_layer``), trained or not.
    field_names: the F fields, in table order.
    path_of: field name -> file to write (e.g. ``Workdir.finetuned``).
    stage_b: stage B's artifacts by field; fields not in it (full tables) are not written.
      Each one's ``with_layer`` reads the layer's weights (PQ carries its variant and usage
      entropy over: the codes are frozen in stage C, so the entropy is unchanged).
    **stats: JSON-able entries for the written artifacts' stats (PQ; e.g. ``source="finetune"``).

  Returns:
    ``{field: Artifact}`` as written.
  """
  out = {}
  for name, layer in zip(field_names, model.embedding.tables, strict=True):
    if name not in stage_b:
      continue
    art = methods.as_artifact(stage_b[name]).with_layer(layer, **stats)
    art.save(path_of(name))
    out[name] = art
  return out


save_compressed_tables = save_tables  # the name before every method wrote its tables
