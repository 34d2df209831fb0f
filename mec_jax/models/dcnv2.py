"""DCNv2: cross network (full rank, or DCN-Mix low-rank experts) and an MLP, parallel/stacked."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.layers.blocks import MLP, CrossNetMix, CrossNetV2, dense
from mec_jax.layers.field_embedding import check_field_embedder

STRUCTURES = ("parallel", "stacked")


class DCNv2(nnx.Module):
  """Deep & Cross Network v2.

  ``parallel``: ``logit = w·concat(Cross(x_0), MLP(x_0)) + b``;
  ``stacked``: ``logit = w·MLP(Cross(x_0)) + b``, with ``x_0 = concat_f e_f``.
  ``low_rank > 0`` replaces the full-rank cross layers by the mixture of ``num_experts`` low-rank
  experts (DCN-Mix).

  References:
    Wang et al., "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale
    Learning to Rank Systems", WWW 2021.
  """

  uses_first_order = False  # no first-order (LR) terms

  def __init__(
    self,
    embedding: FieldEmbedder,
    *,
    hidden_units: Sequence[int] = (500, 500, 500),
    dropout: float = 0.0,
    batch_norm: bool = False,
    num_cross_layers: int = 3,
    structure: str = "parallel",
    low_rank: int = 0,
    num_experts: int = 4,
    rngs: nnx.Rngs,
  ):
    check_field_embedder(embedding, "DCNv2")
    if structure not in STRUCTURES:
      raise ValueError(f"DCNv2: structure must be one of {STRUCTURES}, got {structure!r}")
    if low_rank < 0:
      raise ValueError(f"DCNv2: low_rank must be >= 0 (0 = full rank), got {low_rank}")
    if not hidden_units:
      raise ValueError("DCNv2: hidden_units must not be empty")
    self.embedding = embedding
    self.structure = structure
    in_features = embedding.num_fields * embedding.embed_dim
    if low_rank:
      self.cross = CrossNetMix(in_features, num_cross_layers, low_rank, num_experts, rngs=rngs)
    else:
      self.cross = CrossNetV2(in_features, num_cross_layers, rngs=rngs)
    self.mlp = MLP(in_features, hidden_units, dropout=dropout, batch_norm=batch_norm, rngs=rngs)
    head_in = self.mlp.out_features + (in_features if structure == "parallel" else 0)
    self.head = dense(head_in, 1, rngs=rngs)

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids``/``values`` ``[batch, num_fields]`` -> logits float32 ``[batch]``."""
    emb = self.embedding(ids, values)
    x0 = emb.reshape(emb.shape[0], -1)
    crossed = self.cross(x0)
    if self.structure == "parallel":
      features = jnp.concatenate([crossed, self.mlp(x0)], axis=-1)
    else:
      features = self.mlp(crossed)
    return self.head(features)[:, 0]
