"""Embedding tables trained elsewhere as stage B's input (``pretrain.external_tables=<dir>``).

MEC is model-agnostic: any trained ``[vocab_size, dim]`` table can be compressed. With
``pretrain.external_tables`` set, stage A is skipped; for every field stage B compresses, this
module reads one of (first match wins)

  ``<dir>/<field>.npz``            arrays ``embedding`` [V, d], optional ``counts`` [V], ``bias`` [V]
  ``<dir>/<field>_embedding.npy``  [V, d] (the released MEC code's dumps), with an optional
                                   ``<field>_counts.npy`` [V] beside it

checks it against the dataset (V = the field's vocab size in mec_jax's encoding, d =
``model.embed_dim``, finite values, non-negative counts) and writes it where stage A's tables go
(``pretrain/tables/<field>.npz``), so stages B and C run unchanged. Counts default to the
dataset's train counts (the input of the popularity weights). Row ``v`` must be the embedding of
id ``v`` of the dataset as mec_jax encodes it (`mec_jax.data.schema`), or, with
``pretrain.external_index=fuxictr`` on ``data.name=fuxictr``, of FuxiCTR id ``v`` (tables of a
FuxiCTR-based model, such as the released MEC code's); those rows are re-indexed here
(`reindex_rows`). Without stage A there is no warm start and no swap-in, so stage C trains its
backbone from scratch.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from mec_jax.data import EncodedDataset
from mec_jax.errors import DataError

INDEX_KINDS = ("dataset", "fuxictr")  # pretrain.external_index: what a table's row number means


def candidate_files(directory: str, field: str) -> tuple[str, str]:
  """The two file names looked for, in order: ``<field>.npz``, ``<field>_embedding.npy``."""
  return os.path.join(directory, f"{field}.npz"), os.path.join(directory, f"{field}_embedding.npy")


def read_external_table(
  directory: str, field: str, vocab_size: int, dim: int
) -> dict[str, np.ndarray]:
  """Reads and validates the table of ``field``.

  Args:
    directory: ``pretrain.external_tables``.
    field: field name.
    vocab_size: ids of the field in the dataset (rows expected).
    dim: ``model.embed_dim`` (columns expected).

  Returns:
    ``{"embedding": float32 [V, d]}`` plus ``"counts"`` int64 [V] and ``"bias"`` float32 [V] when
    the files have them.

  Raises:
    DataError: no file for the field, or an array of the wrong shape, dtype or values (the
      message names the file).
  """
  npz, npy = candidate_files(directory, field)
  if os.path.isfile(npz):
    path = npz
    with np.load(npz) as data:
      if "embedding" not in data:
        raise DataError(f"{npz}: no array 'embedding' (has {sorted(data.files)})")
      arrays = {k: data[k] for k in ("embedding", "counts", "bias") if k in data}
  elif os.path.isfile(npy):
    path = npy
    arrays = {"embedding": np.load(npy, allow_pickle=False)}
    counts = os.path.join(directory, f"{field}_counts.npy")
    if os.path.isfile(counts):
      arrays["counts"] = np.load(counts, allow_pickle=False)
  else:
    raise DataError(
      f"{directory}: no external table for field {field!r} (looked for {os.path.basename(npz)} "
      f"and {os.path.basename(npy)})"
    )
  embedding = arrays["embedding"]
  if embedding.shape != (vocab_size, dim) or not np.issubdtype(embedding.dtype, np.floating):
    raise DataError(
      f"{path}: embedding of field {field!r} is {embedding.dtype}{list(embedding.shape)}, expected "
      f"float [{vocab_size}, {dim}] (rows: the field's ids, columns: model.embed_dim)"
    )
  if not np.isfinite(embedding).all():
    raise DataError(f"{path}: embedding of field {field!r} has non-finite values")
  arrays["embedding"] = embedding.astype(np.float32)
  for key, dtype in (("counts", np.int64), ("bias", np.float32)):
    if key not in arrays:
      continue
    value = arrays[key]
    if value.shape != (vocab_size,):
      raise DataError(
        f"{path}: {key} of field {field!r} has shape {list(value.shape)}, expected [{vocab_size}]"
      )
    if key == "counts" and (not np.issubdtype(value.dtype, np.number) or (value < 0).any()):
      raise DataError(f"{path}: counts of field {field!r} must be non-negative numbers")
    arrays[key] = value.astype(dtype)
  return arrays


def reindex_rows(arrays: dict, mapping: np.ndarray, vocab_size: int) -> dict[str, np.ndarray]:
  """Rows indexed by another encoding (e.g. FuxiCTR's ids) -> rows indexed by mec_jax ids.

  Args:
    arrays: `read_external_table` output over the other encoding's ``[V_other]`` ids.
    mapping: int ``[V_other]``, the mec_jax id of each other id (``fuxictr.id_maps``); several
      may share mec_jax's OOV id ``vocab_size - 1``, every other mec_jax id has exactly one.
    vocab_size: mec_jax's vocab size of the field.

  Returns:
    The same keys over ``[vocab_size]`` rows: row ``m`` is the row of the id mapped to ``m``;
    mec_jax's OOV row is the other encoding's last row (its OOV id, as in FuxiCTR); counts of
    ids sharing a mec_jax id add up.
  """
  oov = vocab_size - 1
  source = np.full(vocab_size, len(mapping) - 1, np.int64)
  own = mapping != oov
  source[mapping[own]] = np.nonzero(own)[0]
  out = {k: v[source] for k, v in arrays.items() if k != "counts"}
  if "counts" in arrays:
    out["counts"] = np.bincount(mapping, weights=arrays["counts"], minlength=vocab_size).astype(
      np.int64
    )
  return out


def write_stage_a_tables(config, dataset: EncodedDataset, table_path: Callable[[str], str]) -> None:
  """Validates the external tables of every field stage B compresses and writes them as stage A's.

  Args:
    config: the run config (``pretrain.external_tables``, ``model.embed_dim``,
      ``quantize.min_vocab``).
    dataset: the encoded dataset (vocab sizes, train counts).
    table_path: field -> stage A's table file (``Workdir.table``); existing files are kept.
  """
  directory = str(config.pretrain.external_tables)
  if not os.path.isdir(directory):
    raise DataError(f"{directory}: pretrain.external_tables is not a directory")
  fm = dataset.feature_map
  index_kind = str(config.pretrain.get("external_index", "dataset"))
  if index_kind not in INDEX_KINDS:
    raise DataError(f"pretrain.external_index={index_kind!r}; expected one of {INDEX_KINDS}")
  maps = None
  if index_kind == "fuxictr":
    from mec_jax.data.datasets import fuxictr

    maps = fuxictr.id_maps(config.data, fm, dataset.splits["train"]["ids"])
  for index in fm.fields_to_compress(config.quantize.min_vocab):
    spec = fm.fields[index]
    path = table_path(spec.name)
    if os.path.exists(path):
      continue
    rows = len(maps[spec.name]) if maps is not None else spec.vocab_size
    arrays = read_external_table(directory, spec.name, rows, config.model.embed_dim)
    if maps is not None:
      arrays = reindex_rows(arrays, maps[spec.name], spec.vocab_size)
    if "counts" not in arrays and spec.counts is not None:
      arrays["counts"] = spec.counts
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
