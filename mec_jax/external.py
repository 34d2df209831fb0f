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
dataset's train counts (the input of the popularity weights).

What row ``v`` means is ``pretrain.external_index``: ``dataset`` -- id ``v`` of the dataset as
mec_jax encodes it (`mec_jax.data.schema`); ``fuxictr`` -- FuxiCTR id ``v`` on ``data.name=fuxictr``
(tables of a FuxiCTR-based model, such as the released MEC code's), re-indexed here
(`reindex_rows`); ``auto`` (the default) -- the order the directory's ``id_order.json`` records,
else FuxiCTR's on ``data.name=fuxictr``, else the dataset's, and each table must look like it
(`layout_problem`: FuxiCTR's tables have a PAD row 0 of zeros, mec_jax's do not) or the run stops
naming the key, so tables are never read shifted by one. Without stage A there is no warm start
and no swap-in, so stage C trains its backbone from scratch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np
from absl import logging

from mec_jax.data import EncodedDataset
from mec_jax.errors import DataError

INDEX_KINDS = ("auto", "dataset", "fuxictr")  # pretrain.external_index: what a row number means
ORDER_FILE = "id_order.json"  # a tables directory's recorded id order: {"id_order": kind, ...}


def candidate_files(directory: str, field: str) -> tuple[str, str]:
  """The two file names looked for, in order: ``<field>.npz``, ``<field>_embedding.npy``."""
  return os.path.join(directory, f"{field}.npz"), os.path.join(directory, f"{field}_embedding.npy")


def _read_files(directory: str, field: str) -> tuple[str, dict[str, np.ndarray]]:
  """``(path, arrays)`` of the first file of `candidate_files` there is, unchecked."""
  npz, npy = candidate_files(directory, field)
  if os.path.isfile(npz):
    with np.load(npz) as data:
      if "embedding" not in data:
        raise DataError(f"{npz}: no array 'embedding' (has {sorted(data.files)})")
      return npz, {k: data[k] for k in ("embedding", "counts", "bias") if k in data}
  if os.path.isfile(npy):
    arrays = {"embedding": np.load(npy, allow_pickle=False)}
    counts = os.path.join(directory, f"{field}_counts.npy")
    if os.path.isfile(counts):
      arrays["counts"] = np.load(counts, allow_pickle=False)
    return npy, arrays
  raise DataError(
    f"{directory}: no external table for field {field!r} (looked for {os.path.basename(npz)} "
    f"and {os.path.basename(npy)})"
  )


def _validate(path: str, field: str, arrays: dict, vocab_size: int, dim: int) -> dict:
  embedding = arrays["embedding"]
  if embedding.shape != (vocab_size, dim) or not np.issubdtype(embedding.dtype, np.floating):
    raise DataError(
      f"{path}: embedding of field {field!r} is {embedding.dtype}{list(embedding.shape)}, expected "
      f"float [{vocab_size}, {dim}] (rows: the field's ids, columns: model.embed_dim)"
    )
  if not np.isfinite(embedding).all():
    raise DataError(f"{path}: embedding of field {field!r} has non-finite values")
  arrays = dict(arrays, embedding=embedding.astype(np.float32))
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
  path, arrays = _read_files(directory, field)
  return _validate(path, field, arrays, vocab_size, dim)


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


def recorded_order(directory: str) -> str | None:
  """The id order ``<directory>/id_order.json`` records (written by `mec_jax.fuxictr_export`), or
  None when there is no such file."""
  path = os.path.join(directory, ORDER_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as fh:
      order = json.load(fh).get("id_order")
  except (ValueError, AttributeError) as err:
    raise DataError(f"{path}: not a JSON object with 'id_order' ({err})") from None
  if order not in INDEX_KINDS[1:]:
    raise DataError(f"{path}: id_order is {order!r}, expected one of {INDEX_KINDS[1:]}")
  return order


def resolve_index(config, directory: str) -> tuple[str, bool]:
  """``(kind, checked)``: what the row numbers of the tables in ``directory`` mean.

  ``pretrain.external_index=auto`` takes the order ``id_order.json`` records, else FuxiCTR's on
  ``data.name=fuxictr`` (its tables are what such a user has), else the dataset's; the tables are
  then checked against that order (``checked``, see `layout_problem`). An explicit value is
  trusted: a table that looks otherwise gets a warning.

  Raises:
    DataError: an unknown value, a value the recorded order contradicts, or ``fuxictr`` on
      another dataset than ``data.name=fuxictr``.
  """
  kind = str(config.pretrain.get("external_index", "auto"))
  if kind not in INDEX_KINDS:
    raise DataError(f"pretrain.external_index={kind!r}; expected one of {INDEX_KINDS}")
  recorded = recorded_order(directory)
  if recorded is not None and kind not in ("auto", recorded):
    raise DataError(
      f"{os.path.join(directory, ORDER_FILE)}: the tables are in {recorded} id order, but "
      f"pretrain.external_index={kind!r}; set it to {recorded} or auto"
    )
  checked = kind == "auto"
  if checked:
    kind = recorded or ("fuxictr" if config.data.name == "fuxictr" else "dataset")
  if kind == "fuxictr" and config.data.name != "fuxictr":
    raise DataError(
      f"pretrain.external_index=fuxictr (tables of {directory} indexed by FuxiCTR ids) needs "
      f"data.name=fuxictr on the FuxiCTR dataset folder they were trained on, not "
      f"data.name={config.data.name!r}"
    )
  return kind, checked


def layout_problem(
  embedding: np.ndarray, kind: str, vocab_size: int, fuxictr_rows: int | None = None
) -> str | None:
  """Why ``embedding``'s rows do not look indexed by ``kind`` ids, or None.

  FuxiCTR's table of a field has ``vocab_size`` = its tokens + ``__PAD__`` (row 0) + ``__OOV__``
  (the last row), and row 0 is all zeros: ``nn.Embedding(padding_idx=0)`` neither initializes nor
  trains it. mec_jax's table has no PAD, so it has one row less unless FuxiCTR's OOV id occurs in
  train (tokens rarer than ``min_categr_count``), and its row 0 is the most frequent value's,
  never all zeros once trained. When the sizes coincide, row 0 tells the two apart.

  Args:
    embedding: the table as read, ``[rows, d]``.
    kind: the order it is about to be read in, ``dataset`` or ``fuxictr``.
    vocab_size: the field's ids in mec_jax's encoding.
    fuxictr_rows: FuxiCTR's ``vocab_size`` of the field (``kind="fuxictr"``).
  """
  if embedding.ndim != 2 or not len(embedding):
    return None  # the shape check names it
  rows, pad_like = len(embedding), not np.any(embedding[0])
  if kind == "dataset":
    if rows == vocab_size + 1:
      return (
        f"has {rows} rows, one more than the field's {vocab_size} ids, as FuxiCTR's (PAD row 0)"
      )
    if rows == vocab_size and pad_like:
      return "has row 0 all zeros, as FuxiCTR's PAD row (mec_jax's id 0 is the most frequent value)"
  elif rows == fuxictr_rows and not pad_like:
    return "has row 0 not all zeros, unlike FuxiCTR's PAD row"
  elif rows == vocab_size != fuxictr_rows:
    return f"has the field's {rows} mec_jax ids as rows, FuxiCTR's vocab_size is {fuxictr_rows}"
  return None


_FIX = {
  "dataset": "set pretrain.external_index=fuxictr (with data.name=fuxictr) if rows are FuxiCTR ids",
  "fuxictr": "set pretrain.external_index=dataset if rows are mec_jax ids, =fuxictr to keep them",
}


def write_stage_a_tables(config, dataset: EncodedDataset, table_path: Callable[[str], str]) -> None:
  """Validates the external tables of every field stage B compresses and writes them as stage A's.

  Args:
    config: the run config (``pretrain.external_tables``, ``pretrain.external_index``,
      ``data.name``, ``model.embed_dim``, ``quantize.min_vocab``).
    dataset: the encoded dataset (vocab sizes, train counts).
    table_path: field -> stage A's table file (``Workdir.table``); existing files are kept.

  Raises:
    DataError: a missing or malformed table, or (``pretrain.external_index=auto``) a table whose
      layout contradicts the order it would be read in (`layout_problem`), naming the key to set.
  """
  directory = str(config.pretrain.external_tables)
  if not os.path.isdir(directory):
    raise DataError(f"{directory}: pretrain.external_tables is not a directory")
  fm = dataset.feature_map
  kind, checked = resolve_index(config, directory)
  maps = None
  if kind == "fuxictr":
    from mec_jax.data.datasets import fuxictr

    maps = fuxictr.id_maps(config.data, fm, dataset.splits["train"]["ids"])
  for index in fm.fields_to_compress(config.quantize.min_vocab):
    spec = fm.fields[index]
    path = table_path(spec.name)
    if os.path.exists(path):
      continue
    source, arrays = _read_files(directory, spec.name)
    rows = len(maps[spec.name]) if maps is not None else spec.vocab_size
    problem = layout_problem(np.asarray(arrays["embedding"]), kind, spec.vocab_size, rows)
    if problem:
      message = f"{source}: field {spec.name!r} {problem}; read as {kind} ids, rows would shift"
      if checked:
        raise DataError(f"{message}: {_FIX[kind]}")
      logging.warning("%s (pretrain.external_index=%s is kept as set)", message, kind)
    try:
      arrays = _validate(source, spec.name, arrays, rows, config.model.embed_dim)
    except DataError as err:
      if problem:  # the shape error of an explicit external_index: say which key fixes it
        raise DataError(f"{err}; it {problem}: {_FIX[kind]}") from None
      raise
    if maps is not None:
      arrays = reindex_rows(arrays, maps[spec.name], spec.vocab_size)
    if "counts" not in arrays and spec.counts is not None:
      arrays["counts"] = spec.counts
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
