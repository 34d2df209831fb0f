"""Row-sparse embedding tables: which fields, how they leave Optax, and how a step uses them.

Every full `Embed` table of a model's `FieldEmbedding` with at least ``train.sparse_min_rows``
rows is *sparse*: its embedding (and first-order bias) are taken out of the Optax parameters and
kept in ``TrainState.sparse`` together with their row-wise optimizer state
(`mec_jax.train.row_optimizers`). A step then, per sparse field:

1. ``uniq, inv = unique(ids[:, f])`` (static size = batch; padding id = the table's row count);
2. gathers the touched rows ``[U, d]`` (and ``[U]`` biases);
3. runs the unchanged backbone on a model whose table *is* that block, with ``ids[:, f]``
   replaced by ``inv`` — so the gradient w.r.t. the block is the segment-summed row gradient
   (`mec_jax.ops.take_rows`: no contended atomic adds on accelerators);
4. writes the updated rows and their optimizer state back with a scatter on donated buffers.

Nothing of size V is read, written or copied per step beyond the touched rows.

Sharding: with a mesh of N > 1 devices, sparse arrays are row-sharded ``P('data', ...)`` (rows
padded to a multiple of N; padding rows are never touched), or ``P('model', ...)`` on a
``('data', 'model')`` mesh (padded to a multiple of its k; `row_axes`). XLA partitions the gather
as a local masked gather + an all-reduce of the ``[U, d]`` block and the scatter as a local masked
scatter, so no device ever holds a whole table. Everything else stays replicated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mec_jax.errors import ArtifactError
from mec_jax.layers.embed import Embed
from mec_jax.ops import unique_with_inverse
from mec_jax.train import row_optimizers


@dataclasses.dataclass(frozen=True)
class SparseField:
  """One sparse table (static: part of the compiled step).

  Attributes:
    name: its key in ``TrainState.sparse`` (``"field_<f>"``).
    field: column of ``ids`` it embeds.
    vocab_size: real rows V (the stored arrays may have padding rows after them).
    paths: ``{"embedding": path[, "bias": path]}`` of its parameters in the model's state.
    learning_rate: base step size; 0 freezes the table (no optimizer state, no gradient).
  """

  name: str
  field: int
  vocab_size: int
  paths: Mapping[str, tuple]
  learning_rate: float

  @property
  def frozen(self) -> bool:
    return self.learning_rate == 0


def find_sparse_fields(
  model,
  *,
  min_rows: int,
  rate_of_path,
  sparse_learning_rate: float = 0.0,
) -> tuple[SparseField, ...]:
  """The sparse tables of ``model``: its `Embed` field tables with ``>= min_rows`` rows.

  Args:
    model: a backbone with ``model.embedding.tables`` (other models have no sparse tables).
    min_rows: threshold ``train.sparse_min_rows`` (0 disables sparse tables).
    rate_of_path: ``"/"``-joined parameter path -> its dense learning rate (from the base rate
      and ``lr_overrides``; 0 = frozen).
    sparse_learning_rate: if > 0, the rate of every sparse table that is not frozen.
  """
  tables = getattr(getattr(model, "embedding", None), "tables", None)
  if min_rows <= 0 or tables is None:
    return ()
  out = []
  for f, table in enumerate(tables):
    if type(table) is not Embed or table.vocab_size < min_rows:
      continue
    paths = {"embedding": ("embedding", "tables", f, "embedding")}
    if table.bias is not None:
      paths["bias"] = ("embedding", "tables", f, "bias")
    rate = rate_of_path("/".join(map(str, paths["embedding"])))
    if rate > 0 and sparse_learning_rate > 0:
      rate = sparse_learning_rate
    out.append(SparseField(f"field_{f}", f, table.vocab_size, paths, float(rate)))
  return tuple(out)


def padded_rows(vocab_size: int, num_shards: int) -> int:
  return -(-vocab_size // num_shards) * num_shards


def split_tables(params: nnx.State, fields, num_shards: int = 1) -> tuple[nnx.State, dict]:
  """``(params without the sparse tables, {name: {"embedding", "bias"}})``.

  Rows are padded to a multiple of ``num_shards`` (a copy of the table only when padding is
  needed, i.e. on several devices with V not divisible by their count).
  """
  flat = dict(nnx.to_flat_state(params))
  tables = {}
  for field in fields:
    rows = padded_rows(field.vocab_size, num_shards)
    arrays = {}
    for key, path in field.paths.items():
      value = flat.pop(path)[...]
      if rows != field.vocab_size:
        pad = [(0, rows - field.vocab_size)] + [(0, 0)] * (value.ndim - 1)
        value = jnp.pad(value, pad)
      arrays[key] = value
    tables[field.name] = arrays
  return nnx.from_flat_state(flat), tables


def padding_mismatch(saved: Mapping, target: Mapping, fields, saved_shards: int) -> str | None:
  """Why sparse arrays saved split ``saved_shards`` ways can't be restored into ``target``.

  A checkpoint written on another device count or mesh differs only in each sparse array's padding
  rows (never read or written by a step): those can be cut or zero-padded on restore.

  Args:
    saved: ``{name: {"tables"|"opt": {key: array}}}`` of the checkpoint (shapes are read;
      `Checkpointer.saved_arrays`).
    target: the live ``TrainState.sparse``.
    fields: the `SparseField`s.
    saved_shards: the row multiple the checkpoint was padded to (its `row_shards`).

  Returns:
    None when every saved array has ``padded_rows(V, saved_shards)`` rows and otherwise the
    target's shape; else a message naming the first array that differs.
  """
  if set(saved) != {f.name for f in fields}:
    return f"sparse tables {sorted(saved)} saved, {sorted(f.name for f in fields)} expected"
  for field in fields:
    rows = padded_rows(field.vocab_size, saved_shards)
    for part in ("tables", "opt"):
      want = {k: np.shape(v) for k, v in target[field.name][part].items()}
      have = dict(saved[field.name].get(part) or {})
      if set(have) != set(want):
        return f"{field.name}/{part}: arrays {sorted(have)} saved, {sorted(want)} expected"
      for key, shape in want.items():
        if np.shape(have[key]) != (rows, *shape[1:]):
          return (
            f"{field.name}/{part}/{key}: saved shape {np.shape(have[key])}, expected "
            f"{(rows, *shape[1:])} ({field.vocab_size:,} rows padded for {saved_shards} row shards)"
          )
  return None


def merge_tables(params: nnx.State, tables: Mapping[str, dict], fields) -> nnx.State:
  """The full parameter state: ``params`` with each field's arrays put back at their paths.

  Works inside a trace (blocks ``[U, d]`` for a step) and outside (stored, maybe padded tables).
  """
  flat = dict(nnx.to_flat_state(params))
  for field in fields:
    for key, path in field.paths.items():
      flat[path] = nnx.Param(tables[field.name][key])
  return nnx.from_flat_state(flat)


def init_sparse_state(tables: Mapping[str, dict], fields, optimizer: str) -> dict:
  """``TrainState.sparse``: ``{name: {"tables": arrays, "opt": row-optimizer state}}``."""
  return {
    f.name: {
      "tables": dict(tables[f.name]),
      "opt": {} if f.frozen else row_optimizers.init_row_state(optimizer, tables[f.name]),
    }
    for f in fields
  }


def tables_of(sparse_state: Mapping[str, dict]) -> dict:
  return {name: entry["tables"] for name, entry in sparse_state.items()}


def gather_rows(tables: Mapping[str, dict], ids: jax.Array, fields):
  """Touched rows of every sparse field, and the ids remapped into them.

  Args:
    tables: ``{name: {"embedding": [R, d], "bias": [R]}}`` (R >= V rows).
    ids: int ``[batch, num_fields]``.
    fields: the `SparseField`s.

  Returns:
    ``(uniq, ids, blocks)``: ``{name: int [batch]}`` sorted unique ids padded with R;
    ``ids`` with each sparse column replaced by its index into ``uniq``; ``{name: {key:
    [batch, ...]}}`` the gathered rows.
  """
  uniqs, blocks = {}, {}
  for field in fields:
    arrays = tables[field.name]
    column = ids[:, field.field]
    fill = arrays["embedding"].shape[0]
    # Not jnp.unique: its inverse is an integer scatter-add (contended atomics on GPU).
    uniq, inverse = unique_with_inverse(column, fill)
    ids = ids.at[:, field.field].set(inverse.reshape(column.shape).astype(ids.dtype))
    uniqs[field.name] = uniq
    blocks[field.name] = {k: jnp.take(v, uniq, axis=0, mode="clip") for k, v in arrays.items()}
  return uniqs, ids, blocks


def apply_row_updates(
  sparse_state: Mapping[str, dict],
  uniqs: Mapping[str, jax.Array],
  grads: Mapping[str, dict],
  fields,
  optimizer: str,
  lr_scale: jax.Array,
  *,
  weight_decay: float = 0.0,
) -> dict:
  """New ``TrainState.sparse`` after one row-wise step of every trainable sparse field."""
  out = dict(sparse_state)
  for field in fields:
    if field.frozen:
      continue
    entry = sparse_state[field.name]
    arrays, opt = row_optimizers.update_rows(
      optimizer,
      entry["tables"],
      entry["opt"],
      uniqs[field.name],
      grads[field.name],
      field.learning_rate * lr_scale,
      weight_decay=weight_decay,
    )
    out[field.name] = {"tables": arrays, "opt": opt}
  return out


def row_axes(mesh) -> tuple[str, ...]:
  """Mesh axes a sparse table's rows are split over: ``model`` if the mesh has one, else ``data``.

  On a ``('data', 'model')`` mesh the tables are replicated across ``data``: a lookup's
  all-reduce of the touched rows then spans the k devices of one ``model`` group instead of all
  N, for N/k times the 1-D mesh's table memory per device (`bench/mesh_layout.py`; splitting
  over both axes keeps the memory but hardly shortens the collectives).
  """
  return ("model",) if "model" in mesh.axis_names else (mesh.axis_names[0],)


def row_shards(mesh) -> int:
  """How many ways the rows are split (the multiple `padded_rows` pads to)."""
  return int(np.prod([mesh.shape[axis] for axis in row_axes(mesh)]))


def state_shardings(state, mesh):
  """Shardings for a train state: sparse arrays row-sharded on `row_axes`, the rest replicated."""
  replicated = NamedSharding(mesh, P())
  shardings = jax.tree.map(lambda _: replicated, state)
  if row_shards(mesh) == 1:
    return shardings
  rows = jax.tree.map(lambda x: row_sharding(mesh, x.ndim), state.sparse)
  return shardings.replace(sparse=rows)


def row_sharding(mesh, ndim: int, axes=None) -> NamedSharding:
  """Rows (the leading axis) split over ``axes`` (default `row_axes`), the rest not split."""
  axes = row_axes(mesh) if axes is None else tuple(axes)
  return NamedSharding(mesh, P(axes if len(axes) > 1 else axes[0], *([None] * (ndim - 1))))


def model_tables(tables: Mapping[str, dict], fields) -> dict:
  """Un-padded tables the model can hold again (gathered from all processes when sharded).

  Without padding and on one process this is the same arrays (no copy). Otherwise one
  ``[V, ...]`` copy per array; across processes every process gets the whole table in host
  memory (so process 0 can write it).
  """
  from jax.experimental import multihost_utils

  out = {}
  for field in fields:
    arrays = {}
    for key, value in tables[field.name].items():
      if not value.is_fully_addressable:
        value = multihost_utils.process_allgather(value, tiled=True)
      arrays[key] = value if value.shape[0] == field.vocab_size else value[: field.vocab_size]
    out[field.name] = arrays
  return out


@dataclasses.dataclass(frozen=True)
class SparseTables:
  """A model's row-sparse tables and what the loop does with them, as one object.

  Holds the static description (`SparseField`s, the row-wise optimizer's name, the mesh) and the
  operations that move the tables between the model's parameters and ``TrainState.sparse``:
  split/merge, the state's shardings, the full parameters for evaluation, loading the trained
  tables back into the model, and restoring a checkpoint padded for another mesh. With no
  fields every operation is the identity, so the loop has no sparse branch.

  Attributes:
    fields: the sparse tables (`find_sparse_fields`; empty: none).
    optimizer: row-wise optimizer (`row_optimizers.SPARSE_OPTIMIZERS`).
    mesh: the train mesh (rows split over `row_axes`).
  """

  fields: tuple[SparseField, ...]
  optimizer: str
  mesh: jax.sharding.Mesh

  @property
  def row_shards(self) -> int:
    """How many ways the rows are split on this mesh (`row_shards`)."""
    return row_shards(self.mesh)

  def describe(self) -> str:
    """One line per table for the log (empty when none)."""
    return ", ".join(
      f"field {f.field} ({f.vocab_size:,} rows, lr {f.learning_rate:g})" for f in self.fields
    )

  def split(self, params: nnx.State) -> tuple[nnx.State, dict]:
    """``(params without the sparse tables, TrainState.sparse)``, rows padded for the mesh."""
    params, tables = split_tables(params, self.fields, self.row_shards)
    return params, init_sparse_state(tables, self.fields, self.optimizer)

  def merge(self, params: nnx.State, tables: Mapping[str, dict]) -> nnx.State:
    """`merge_tables` of these fields (``params`` itself when there are none)."""
    return merge_tables(params, tables, self.fields) if self.fields else params

  def take_out(self, params: nnx.State) -> tuple[nnx.State, dict]:
    """`split_tables` without padding: ``(params without the tables, {name: arrays})``."""
    return split_tables(params, self.fields) if self.fields else (params, {})

  def gather(self, tables: Mapping[str, dict], ids: jax.Array):
    """`gather_rows` of these fields: ``(uniq, ids remapped, blocks)`` (no-op when none)."""
    if not self.fields:
      return {}, ids, {}
    return gather_rows(tables, ids, self.fields)

  def update(self, sparse_state, uniqs, grads, lr_scale: jax.Array, weight_decay: float = 0.0):
    """`apply_row_updates` of the trainable fields with this optimizer."""
    return apply_row_updates(
      sparse_state, uniqs, grads, self.fields, self.optimizer, lr_scale, weight_decay=weight_decay
    )

  def shardings(self, state):
    """Sharding tree of a train state: sparse arrays row-sharded, the rest replicated."""
    return state_shardings(state, self.mesh)

  def eval_params(self, state) -> nnx.State:
    """The full parameter state (sparse tables in place, still sharded) for the eval step."""
    if not self.fields:
      return state.params
    return merge_tables(state.params, tables_of(state.sparse), self.fields)

  def load_into_model(self, model, state) -> None:
    """Puts ``state``'s parameters (un-padded sparse tables included) and others into ``model``."""
    params = state.params
    if self.fields:
      tables = model_tables(tables_of(state.sparse), self.fields)
      params = merge_tables(params, tables, self.fields)
    nnx.update(model, params, state.other)

  def restore(self, checkpointer, step: int, state):
    """``checkpointer.restore`` into ``state``, also from a run on another device count or mesh.

    Sparse arrays are padded to a multiple of their row shard count; a checkpoint padded for
    another count is restored onto this mesh with its padding rows (never read) cut or
    zero-filled, once its shapes show that nothing else differs.

    Raises:
      ArtifactError: the checkpoint differs in more than padding.
    """
    shards = self.row_shards
    saved_shards = shards
    if self.fields:
      saved_shards = checkpointer.loop_state(step).get("row_shards", shards)
    if saved_shards == shards:
      return checkpointer.restore(step, state)
    saved = checkpointer.saved_arrays(step)
    problem = padding_mismatch(saved.get("sparse", {}), state.sparse, self.fields, saved_shards)
    dense_saved = {k: v for k, v in saved.items() if k != "sparse"}
    if problem is None and _shapes(dense_saved) != _shapes(state.replace(sparse={})):
      problem = "the dense parameters or optimizer state differ"
    if problem:
      raise ArtifactError(
        f"{checkpointer.directory}: step {step} was saved with sparse rows split {saved_shards} "
        f"ways and cannot be restored split {shards} ways ({self.mesh.size} devices): {problem}"
      )
    logging.info("restoring step %d saved %d row shards onto %d", step, saved_shards, shards)
    return checkpointer.restore(step, state, strict=False)


def _shapes(tree) -> list:
  return sorted(np.shape(x) for x in jax.tree.leaves(tree))
