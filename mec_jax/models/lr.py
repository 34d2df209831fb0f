"""LR: logistic regression on the first-order weights of the field embedding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.layers.field_embedding import check_field_embedder


class LR(nnx.Module):
  """``logit = b + Σ_f w_f(id_f) · value_f``.

  Uses only ``embedding.first_order``; the embedding vectors are unused (and get no gradient).
  """

  uses_first_order = True  # the logit sums embedding.first_order (memory counts those tables)

  def __init__(self, embedding: FieldEmbedder, *, rngs: nnx.Rngs):
    del rngs  # no random init: the bias starts at 0
    check_field_embedder(embedding, "LR")
    self.embedding = embedding
    self.bias = nnx.Param(jnp.zeros((), jnp.float32))

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids``/``values`` ``[batch, num_fields]`` -> logits float32 ``[batch]``."""
    return jnp.sum(self.embedding.first_order(ids, values), axis=-1) + self.bias[...]
