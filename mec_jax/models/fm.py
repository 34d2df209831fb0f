"""FM: factorization machine (first-order terms plus all pairwise inner products)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.layers.field_embedding import check_field_embedder
from mec_jax.layers.interactions import fm_pairwise


class FM(nnx.Module):
  """``logit = b + Σ_f w_f + Σ_{i<j} <e_i, e_j>``.

  References:
    Rendle, "Factorization Machines", ICDM 2010.
  """

  uses_first_order = True  # the logit sums embedding.first_order (memory counts those tables)

  def __init__(self, embedding: FieldEmbedder, *, rngs: nnx.Rngs):
    del rngs
    check_field_embedder(embedding, "FM")
    self.embedding = embedding
    self.bias = nnx.Param(jnp.zeros((), jnp.float32))

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids``/``values`` ``[batch, num_fields]`` -> logits float32 ``[batch]``."""
    emb = self.embedding(ids, values)
    first = jnp.sum(self.embedding.first_order(ids, values), axis=-1)
    return self.bias[...] + first + fm_pairwise(emb)
