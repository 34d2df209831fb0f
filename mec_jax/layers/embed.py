"""`Embed`: a full embedding table for one field (the uncompressed `Table`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.layers.base import lookup_ids
from mec_jax.ops import take_rows

CHUNKED_INIT_ROWS = 1 << 20  # tables above this many rows are drawn chunk by chunk ...
INIT_CHUNK_ROWS = 1 << 16  # ... of this many rows


def _normal_rows(key: jax.Array, rows: int, dim: int, std: float) -> jax.Array:
  """``std * N(0, 1)`` float32 ``[rows, dim]``.

  One ``jax.random.normal`` needs ~4x the table in temporaries (random bits, intermediates, the
  scaled copy): 6.4 GB peak for a 10^7 x 40 table. Above `CHUNKED_INIT_ROWS` rows the rows are
  drawn in chunks of `INIT_CHUNK_ROWS` (chunk ``c`` from ``fold_in(key, c)``) written in place
  into one donated buffer (peak ~1x the table).
  """
  if rows <= CHUNKED_INIT_ROWS:
    return std * jax.random.normal(key, (rows, dim), jnp.float32)
  out = jnp.zeros((rows, dim), jnp.float32)
  for chunk, start in enumerate(range(0, rows, INIT_CHUNK_ROWS)):
    size = min(INIT_CHUNK_ROWS, rows - start)
    out = _fill_rows(out, jax.random.fold_in(key, chunk), start, std, size)
  return out


@functools.partial(jax.jit, donate_argnums=0, static_argnums=4)
def _fill_rows(out, key, start, std, size: int):
  part = std * jax.random.normal(key, (size, out.shape[1]), jnp.float32)
  return jax.lax.dynamic_update_slice(out, part, (start, 0))


class Embed(nnx.Module):
  """A full ``[vocab_size, dim]`` embedding table plus an optional first-order (LR) weight per id.

  Implements the `mec_jax.layers.base.Table` protocol. Rows start from ``N(0, init_std²)`` (the
  FuxiCTR default of 1e-4 keeps the initial FM/cross terms tiny); first-order weights start at 0.

  Ids outside ``[0, vocab_size)`` read the row of ``oov_id`` (the id policy of
  `mec_jax.layers.base`, shared with `CodebookEmbed`). Lookups are `mec_jax.ops.take_rows`: their
  gradient is a segment sum without contended atomic adds on accelerators.

  Attributes:
    vocab_size: number of ids.
    dim: embedding size.
    oov_id: row that out-of-range ids read (default ``vocab_size - 1``, the schema's OOV id).
    embedding: ``nnx.Param`` float32 ``[vocab_size, dim]``.
    bias: ``nnx.Param`` float32 ``[vocab_size]`` (first-order weights), or None.
  """

  def __init__(
    self,
    vocab_size: int,
    dim: int,
    *,
    rngs: nnx.Rngs,
    first_order: bool = True,
    init_std: float = 1e-4,
    oov_id: int | None = None,
  ):
    if vocab_size < 1:
      raise ValueError(f"Embed: vocab_size must be >= 1, got {vocab_size}")
    if dim < 1:
      raise ValueError(f"Embed: dim must be >= 1, got {dim}")
    self.vocab_size = int(vocab_size)
    self.dim = int(dim)
    self.oov_id = self.vocab_size - 1 if oov_id is None else int(oov_id)
    if not 0 <= self.oov_id < self.vocab_size:
      raise ValueError(f"Embed: oov_id {self.oov_id} outside [0, {self.vocab_size})")
    self.embedding = nnx.Param(_normal_rows(rngs.params(), self.vocab_size, self.dim, init_std))
    self.bias = nnx.Param(jnp.zeros((self.vocab_size,), jnp.float32)) if first_order else None

  def __call__(self, ids: jax.Array) -> jax.Array:
    """Looks up rows.

    Args:
      ids: int ``[...]``, normally in ``[0, vocab_size)``; others read the ``oov_id`` row;
        non-integer ids raise `DataError` (the id policy of `mec_jax.layers.base`).

    Returns:
      float32 ``[..., dim]``.
    """
    return take_rows(self.embedding[...], self._ids(ids))

  def _ids(self, ids) -> jax.Array:
    return lookup_ids(ids, self.vocab_size, self.oov_id, "Embed")

  def first_order(self, ids: jax.Array) -> jax.Array:
    """First-order weight of each id: float32 ``[...]`` (zeros when built without ``bias``)."""
    ids = self._ids(ids)
    if self.bias is None:
      return jnp.zeros(ids.shape, jnp.float32)
    return take_rows(self.bias[...], ids)

  def as_numpy(self) -> tuple[np.ndarray, np.ndarray | None]:
    """Host copies: (embedding ``[vocab_size, dim]``, bias ``[vocab_size]`` or None)."""
    bias = None if self.bias is None else np.asarray(self.bias[...])
    return np.asarray(self.embedding[...]), bias
