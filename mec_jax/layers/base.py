"""The interface every embedding module implements, so a backbone never knows which one it got.

Two levels:

* A **table** embeds the ids of one field: ``table(ids) -> [..., dim]`` and
  ``table.first_order(ids) -> [...]`` (the field's 1-d LR weight per id). `Embed` (a full
  table) and `CodebookEmbed` (product-quantized codes + codebooks) are tables.
* A **field embedding** embeds a whole batch: ``embedding(ids, values) -> [batch, num_fields, dim]``
  and ``embedding.first_order(ids, values) -> [batch, num_fields]``, where ``ids``/``values`` are the
  ``[batch, num_fields]`` arrays of the batch format (see ``mec_jax.data.schema``). Backbones take a
  field embedding in their constructor and use only this interface plus ``num_fields``/``embed_dim``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax


@runtime_checkable
class Table(Protocol):
  """One field's embedding table: ``vocab_size`` ids, rows of size ``dim``."""

  vocab_size: int
  dim: int

  def __call__(self, ids: jax.Array) -> jax.Array:
    """int ``ids [...]`` -> float32 ``[..., dim]``."""

  def first_order(self, ids: jax.Array) -> jax.Array:
    """int ``ids [...]`` -> float32 ``[...]``, the field's first-order (LR) weight per id."""


@runtime_checkable
class FieldEmbedder(Protocol):
  """Embeds a whole batch of ``num_fields`` fields into rows of size ``embed_dim``."""

  num_fields: int
  embed_dim: int

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids`` int32 ``[batch, F]``, ``values`` float32 ``[batch, F]`` -> ``[batch, F, embed_dim]``."""

  def first_order(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """int32 ``ids [batch, F]``, float32 ``values [batch, F]`` -> float32 ``[batch, F]``."""
