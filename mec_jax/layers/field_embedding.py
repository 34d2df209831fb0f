"""`FieldEmbedding`: one `Table` per field, embedding a whole ``[batch, num_fields]`` batch."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.layers.base import FieldEmbedder, Table
from mec_jax.layers.embed import Embed


class FieldEmbedding(nnx.Module):
  """Per-field tables behind the `mec_jax.layers.base.FieldEmbedder` interface.

  Field ``f`` embeds as ``tables[f](ids[:, f]) * values[:, f]``. Tables may be of different kinds
  (full `Embed`, `CodebookEmbed`, ...) as long as they share ``dim``. Numeric fields have a
  one-row table (id 0), so they become a learned vector scaled by the value.

  Attributes:
    tables: ``nnx.List`` of tables, one per field.
    num_fields: number of fields F.
    embed_dim: embedding size d shared by all tables.
  """

  def __init__(self, tables: Sequence[Table]):
    tables = list(tables)
    if not tables:
      raise ValueError("FieldEmbedding: needs at least one table, got none")
    for f, table in enumerate(tables):
      if not isinstance(table, Table):
        raise ValueError(
          f"FieldEmbedding: table {f} ({type(table).__name__}) does not implement the Table "
          "protocol (vocab_size, dim, __call__(ids), first_order(ids))"
        )
    dims = {int(t.dim) for t in tables}
    if len(dims) != 1:
      raise ValueError(f"FieldEmbedding: all tables must share one dim, got dims {sorted(dims)}")
    self.tables = nnx.List(tables)
    self.num_fields = len(tables)
    self.embed_dim = dims.pop()

  @classmethod
  def full(
    cls,
    vocab_sizes: Sequence[int],
    dim: int,
    *,
    rngs: nnx.Rngs,
    first_order: bool = True,
    init_std: float = 1e-4,
  ) -> FieldEmbedding:
    """One full `Embed` table per field."""
    return cls(
      [
        Embed(int(v), dim, rngs=rngs, first_order=first_order, init_std=init_std)
        for v in vocab_sizes
      ]
    )

  @property
  def vocab_sizes(self) -> list[int]:
    """``[F]`` number of ids of each field's table."""
    return [int(t.vocab_size) for t in self.tables]

  def _check(self, ids: jax.Array, values: jax.Array) -> None:
    if ids.ndim != 2 or ids.shape[1] != self.num_fields:
      raise ValueError(
        f"FieldEmbedding: ids has shape {ids.shape}, expected [batch, {self.num_fields}]"
      )
    if values.shape != ids.shape:
      raise ValueError(f"FieldEmbedding: values shape {values.shape} != ids shape {ids.shape}")

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """Embeds a batch.

    Args:
      ids: int32 ``[batch, num_fields]``.
      values: float32 ``[batch, num_fields]``.

    Returns:
      float32 ``[batch, num_fields, embed_dim]``.
    """
    self._check(ids, values)
    rows = [table(ids[:, f]) for f, table in enumerate(self.tables)]
    return jnp.stack(rows, axis=1) * values[:, :, None]

  def first_order(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """First-order (LR) terms: float32 ``[batch, num_fields]``."""
    self._check(ids, values)
    weights = [table.first_order(ids[:, f]) for f, table in enumerate(self.tables)]
    return jnp.stack(weights, axis=1) * values

  def tables_as_numpy(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Host copies of full tables: per field (embedding ``[V, d]``, bias ``[V]`` or None).

    Raises:
      ValueError: if some field's table is not a full `Embed`.
    """
    out = []
    for f, table in enumerate(self.tables):
      if not isinstance(table, Embed):
        raise ValueError(
          f"FieldEmbedding.tables_as_numpy: field {f} holds a {type(table).__name__}, "
          "not a full Embed table"
        )
      out.append(table.as_numpy())
    return out


def check_field_embedder(embedding, owner: str) -> None:
  """Raises ValueError unless ``embedding`` implements `FieldEmbedder` (backbone constructors)."""
  if not isinstance(embedding, FieldEmbedder):
    raise ValueError(
      f"{owner}: embedding must implement FieldEmbedder (num_fields, embed_dim, "
      f"__call__(ids, values), first_order(ids, values)), got {type(embedding).__name__}"
    )
  if embedding.num_fields < 1 or embedding.embed_dim < 1:
    raise ValueError(
      f"{owner}: embedding has num_fields={embedding.num_fields}, "
      f"embed_dim={embedding.embed_dim}; both must be >= 1"
    )
