"""IPNN: product-based network with an inner-product layer."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.layers.blocks import MLP
from mec_jax.layers.field_embedding import check_field_embedder
from mec_jax.layers.interactions import pairwise_inner_products


class PNN(nnx.Module):
  """``logit = MLP(concat(concat_f e_f, [<e_i, e_j>]_{i<j}))``.

  The product layer feeds the flattened embeddings and all ``F(F-1)/2`` pairwise inner products
  to the MLP (the IPNN form used by FuxiCTR and the MEC reference code).

  References:
    Qu et al., "Product-based Neural Networks for User Response Prediction", ICDM 2016.
  """

  uses_first_order = False  # no first-order (LR) terms

  def __init__(
    self,
    embedding: FieldEmbedder,
    *,
    hidden_units: Sequence[int] = (300, 300, 300),
    dropout: float = 0.0,
    batch_norm: bool = False,
    rngs: nnx.Rngs,
  ):
    check_field_embedder(embedding, "PNN")
    self.embedding = embedding
    num_fields, dim = embedding.num_fields, embedding.embed_dim
    in_features = num_fields * dim + num_fields * (num_fields - 1) // 2
    self.mlp = MLP(
      in_features, hidden_units, output_dim=1, dropout=dropout, batch_norm=batch_norm, rngs=rngs
    )

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids``/``values`` ``[batch, num_fields]`` -> logits float32 ``[batch]``."""
    emb = self.embedding(ids, values)
    features = jnp.concatenate(
      [emb.reshape(emb.shape[0], -1), pairwise_inner_products(emb)], axis=-1
    )
    return self.mlp(features)[:, 0]
