"""Wide & Deep: a linear (first-order) part plus an MLP over the field embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.layers.blocks import MLP
from mec_jax.layers.field_embedding import check_field_embedder


class WideDeep(nnx.Module):
  """``logit = b + Σ_f w_f + MLP(concat_f e_f)`` (the wide part sees the raw ids only).

  References:
    Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016.
  """

  uses_first_order = True  # the logit sums embedding.first_order (memory counts those tables)

  def __init__(
    self,
    embedding: FieldEmbedder,
    *,
    hidden_units: Sequence[int] = (300, 300, 300),
    dropout: float = 0.0,
    batch_norm: bool = False,
    rngs: nnx.Rngs,
  ):
    check_field_embedder(embedding, "WideDeep")
    self.embedding = embedding
    self.bias = nnx.Param(jnp.zeros((), jnp.float32))
    self.mlp = MLP(
      embedding.num_fields * embedding.embed_dim,
      hidden_units,
      output_dim=1,
      dropout=dropout,
      batch_norm=batch_norm,
      rngs=rngs,
    )

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids``/``values`` ``[batch, num_fields]`` -> logits float32 ``[batch]``."""
    emb = self.embedding(ids, values)
    wide = jnp.sum(self.embedding.first_order(ids, values), axis=-1)
    return self.bias[...] + wide + self.mlp(emb.reshape(emb.shape[0], -1))[:, 0]
