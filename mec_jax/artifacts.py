"""The per-field table files of a work directory, written and read back with their checks.

* ``pretrain/tables/<field>.npz`` (stage A): ``embedding [V, d]``, ``bias [V]`` (backbones with
  first-order terms), ``counts [V]`` (train occurrences).
* ``quantize/<field>.npz`` (stage B): a `CompressedTable`.

Writers go through a temp file and a rename, so a file exists complete or not at all. Readers
raise `ArtifactError` naming the file and what is wrong (damaged bytes, a missing array, a shape
that does not fit the field or the model, NaN/Inf), so a damaged workdir never fails later and
elsewhere; the message says what to delete.
"""

from __future__ import annotations

import os

import numpy as np

from mec_jax.compression.table import CompressedTable, read_npz
from mec_jax.errors import ArtifactError


def check_finite(array: np.ndarray, what: str) -> None:
  """Raises `ArtifactError` naming ``what`` and the first bad row if ``array`` has NaN/Inf.

  Args:
    array: float ``[V, ...]``.
    what: the table, for the message (``"stage-A table of field 'cat0'"``).
  """
  finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
  if not finite.all():
    raise ArtifactError(
      f"{what} has NaN/Inf in {int((~finite).sum())} of {len(array)} rows (first: row "
      f"{int(np.argmin(finite))})"
    )


def save_stage_a_table(
  path: str, field: str, embedding: np.ndarray, bias: np.ndarray | None, counts
) -> None:
  """Writes one stage-A table after checking it is finite (a diverged run saves nothing).

  Args:
    path: ``pretrain/tables/<field>.npz``.
    field: field name, for messages.
    embedding: float32 ``[V, d]``.
    bias: float32 ``[V]`` or None.
    counts: int ``[V]`` train counts or None.
  """
  check_finite(embedding, f"stage A's trained table of field {field!r}")
  if bias is not None:
    check_finite(bias, f"stage A's first-order weights of field {field!r}")
  arrays = {"embedding": embedding} | ({"bias": bias} if bias is not None else {})
  if counts is not None:
    arrays["counts"] = counts
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def load_stage_a_table(path: str, field, dim: int) -> tuple[np.ndarray, np.ndarray | None]:
  """``(embedding [V, d], bias [V] or None)`` of stage A for ``field`` (a `FieldSpec`).

  Raises:
    ArtifactError: missing or damaged file, shapes other than ``[field.vocab_size, dim]``,
      NaN/Inf values.
  """
  arrays = read_npz(path, ("embedding",), f"stage-A table of field {field.name!r}")
  embedding, bias = arrays["embedding"], arrays.get("bias")
  expected = (field.vocab_size, dim)
  if embedding.shape != expected or (bias is not None and bias.shape != expected[:1]):
    raise ArtifactError(
      f"{path}: embedding {embedding.shape}, bias {None if bias is None else bias.shape}; "
      f"field {field.name!r} needs {expected} and ({field.vocab_size},); delete it to recompute"
    )
  check_finite(embedding, f"{path}: embedding")
  if bias is not None:
    check_finite(bias, f"{path}: bias")
  return embedding, bias


def load_stage_a_counts(path: str, field) -> np.ndarray:
  """int64 ``[V]`` train counts stored with a stage-A table, else ``field.counts``, else ones.

  External tables (``pretrain.external_tables``) may bring their own counts; stage A stores the
  dataset's. Raises `ArtifactError` for a counts array of the wrong shape or with negatives.
  """
  arrays = read_npz(path, ("embedding",), f"stage-A table of field {field.name!r}")
  counts = arrays.get("counts", field.counts)
  if counts is None:
    return np.ones(field.vocab_size, np.int64)
  counts = np.asarray(counts)
  if counts.shape != (field.vocab_size,) or (counts.size and counts.min() < 0):
    raise ArtifactError(
      f"{path}: counts {counts.shape} (min {counts.min() if counts.size else None}); field "
      f"{field.name!r} needs ({field.vocab_size},) non-negative counts; delete it to recompute"
    )
  return counts.astype(np.int64)


def load_compressed_table(path: str, field, dim: int) -> CompressedTable:
  """Stage B's `CompressedTable` of ``field`` (a `FieldSpec`), checked against the field.

  Raises:
    ArtifactError: missing or damaged file, or a table for another vocabulary or dimension.
  """
  table = CompressedTable.load(path)
  if table.vocab_size != field.vocab_size or table.dim != dim:
    raise ArtifactError(
      f"{path}: compressed table of {table.vocab_size} ids x dim {table.dim}; field "
      f"{field.name!r} has {field.vocab_size} ids and model.embed_dim is {dim}; delete it to "
      "recompute"
    )
  check_finite(table.codebooks, f"{path}: codebooks")
  return table
