"""L2 regularizers of a train step: on the embedding rows a batch touches, and on the network.

Both follow FuxiCTR's coefficient convention, ``(λ / p) · ||w||_p^p`` with p = 2, so a term's
gradient is ``λ · w`` (`fuxictr/pytorch/models/rank_model.py`, ``BaseModel.regularization_loss``;
its configs write them ``embedding_regularizer`` and ``net_regularizer``). They differ from
FuxiCTR in *which* embedding rows they cover:

- FuxiCTR (PyTorch, and Keras ``embeddings_regularizer`` in its TensorFlow port) penalizes the
  **whole** table every step: every row gets ``λ · row`` added to its gradient, touched or not.
- `embedding_l2` penalizes only the rows the batch looks up, **once per unique touched row**
  (not once per occurrence): ``(λ/2) Σ_f Σ_{r ∈ unique(ids[:, f])} (||E_f[r]||² + b_f[r]²)``.
  A touched row's gradient is then ``λ · row`` whatever its count in the batch, i.e. FuxiCTR's
  per-row strength on the steps that touch the row, and nothing on the others. That is the only
  form a row-sparse table (`mec_jax.train.sparse`) can apply without touching all V rows per
  step, and the form a dense table gets here too, so both train alike.

The per-occurrence form (``mean_batch Σ_f ||e_f||²`` of the value-scaled looked-up vectors, whose
gradient grows with a row's count) is ``model.embedding_regularizer`` (`mec_jax.train.steps`).

Which weights: the embedding terms cover every full `Embed` table of ``model.embedding`` (vectors
and first-order weights ``b``); other table kinds (compressed ones in stage C) are not
penalized. `net_l2` covers every parameter outside ``model.embedding`` (weights and biases).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import lookup_ids
from mec_jax.layers.embed import Embed
from mec_jax.ops import take_rows


def unique_rows_sq(table: jax.Array, ids: jax.Array) -> jax.Array:
  """``Σ_{r ∈ unique(ids)} ||table[r]||²``: each touched row counted once.

  Args:
    table: float ``[V, ...]`` (``[V, d]`` vectors or ``[V]`` first-order weights).
    ids: int ``[n]`` in ``[0, V)``.

  Returns:
    float32 scalar; its gradient is ``2 · table[r]`` on the touched rows, 0 elsewhere.
  """
  ids = jnp.sort(ids.reshape(-1))
  first = jnp.concatenate([jnp.ones((1,), bool), ids[1:] != ids[:-1]])
  rows = take_rows(table, ids).astype(jnp.float32)
  sq = jnp.square(rows).reshape(rows.shape[0], -1).sum(axis=1)
  return jnp.sum(jnp.where(first, sq, 0.0))


def block_rows_sq(block: jax.Array, uniq: jax.Array, vocab_size: int) -> jax.Array:
  """``Σ_u ||block[u]||²`` over the real rows of a gathered sparse block.

  Args:
    block: float ``[U, ...]``, row ``u`` holding table row ``uniq[u]`` (`sparse.gather_rows`).
    uniq: int ``[U]`` distinct touched ids ascending, padded with ids ``>= vocab_size``.
    vocab_size: V, the table's real rows.
  """
  sq = jnp.square(block.astype(jnp.float32)).reshape(block.shape[0], -1).sum(axis=1)
  return jnp.sum(jnp.where(uniq < vocab_size, sq, 0.0))


def embedding_l2(
  weight: float,
  embedding,
  ids: jax.Array,
  sparse_uniqs: Mapping[int, jax.Array] | None = None,
) -> jax.Array:
  """``(weight/2) Σ`` over the touched rows of every full table (the module docstring's formula).

  Args:
    weight: λ, ``train.embedding_l2``.
    embedding: the model's `FieldEmbedding` inside the step (sparse fields' tables are the
      gathered blocks).
    ids: int ``[batch, num_fields]`` the model was called with (sparse columns already remapped
      into their blocks).
    sparse_uniqs: ``{field: uniq [U]}`` of the row-sparse fields (`sparse.gather_rows`): their
      table is the block of ``uniq``'s rows, each row once.

  Returns:
    float32 scalar.
  """
  sparse_uniqs = sparse_uniqs or {}
  total = jnp.zeros((), jnp.float32)
  for f, table in enumerate(getattr(embedding, "tables", ())):
    if not isinstance(table, Embed):
      continue
    arrays = [table.embedding[...]] + ([] if table.bias is None else [table.bias[...]])
    if f in sparse_uniqs:
      total += sum(block_rows_sq(a, sparse_uniqs[f], table.vocab_size) for a in arrays)
    else:
      rows = lookup_ids(ids[:, f], table.vocab_size, table.oov_id, "embedding_l2")
      total += sum(unique_rows_sq(a, rows) for a in arrays)
  return 0.5 * weight * total


def is_embedding_path(path: tuple) -> bool:
  """Whether a parameter path lies under ``model.embedding`` (excluded from `net_l2`)."""
  return bool(path) and path[0] == "embedding"


def net_l2(weight: float, params: nnx.State) -> jax.Array:
  """``(weight/2) Σ ||θ||²`` over the parameters outside ``model.embedding``.

  Args:
    weight: λ, ``train.net_l2``.
    params: the step's Optax parameters (``nnx.Param`` state; sparse tables are elsewhere).

  Returns:
    float32 scalar.
  """
  total = jnp.zeros((), jnp.float32)
  for path, value in nnx.to_flat_state(params):
    if not is_embedding_path(path):
      total += jnp.sum(jnp.square(jnp.asarray(value[...], jnp.float32)))
  return 0.5 * weight * total
