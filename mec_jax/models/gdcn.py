"""GDCN: gated cross network with an MLP, parallel (GDCN-P) or stacked (GDCN-S)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.layers.blocks import MLP, GatedCrossNet, dense
from mec_jax.layers.field_embedding import check_field_embedder

STRUCTURES = ("parallel", "stacked")


class GDCN(nnx.Module):
  """Gated Deep Cross Network.

  ``parallel`` (GDCN-P): ``logit = w·concat(GCN(x_0), MLP(x_0)) + b``;
  ``stacked`` (GDCN-S): ``logit = MLP(GCN(x_0))`` with a linear output layer.

  References:
    Wang et al., "Towards Deeper, Lighter and Interpretable Cross Network for CTR Prediction",
    CIKM 2023.
  """

  uses_first_order = False  # no first-order (LR) terms

  def __init__(
    self,
    embedding: FieldEmbedder,
    *,
    hidden_units: Sequence[int] = (1024, 512, 256),
    dropout: float = 0.0,
    batch_norm: bool = False,
    num_cross_layers: int = 3,
    structure: str = "parallel",
    rngs: nnx.Rngs,
  ):
    check_field_embedder(embedding, "GDCN")
    if structure not in STRUCTURES:
      raise ValueError(f"GDCN: structure must be one of {STRUCTURES}, got {structure!r}")
    if not hidden_units:
      raise ValueError("GDCN: hidden_units must not be empty")
    self.embedding = embedding
    self.structure = structure
    in_features = embedding.num_fields * embedding.embed_dim
    self.cross = GatedCrossNet(in_features, num_cross_layers, rngs=rngs)
    if structure == "parallel":
      self.mlp = MLP(in_features, hidden_units, dropout=dropout, batch_norm=batch_norm, rngs=rngs)
      self.head = dense(in_features + self.mlp.out_features, 1, rngs=rngs)
    else:
      self.mlp = MLP(
        in_features,
        hidden_units,
        output_dim=1,
        dropout=dropout,
        batch_norm=batch_norm,
        rngs=rngs,
      )
      self.head = None

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids``/``values`` ``[batch, num_fields]`` -> logits float32 ``[batch]``."""
    emb = self.embedding(ids, values)
    x0 = emb.reshape(emb.shape[0], -1)
    crossed = self.cross(x0)
    if self.head is not None:
      return self.head(jnp.concatenate([crossed, self.mlp(x0)], axis=-1))[:, 0]
    return self.mlp(crossed)[:, 0]
