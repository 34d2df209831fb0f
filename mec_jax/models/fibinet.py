"""FiBiNET: SENET field re-weighting plus bilinear interactions, fed to an MLP."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.layers.blocks import MLP
from mec_jax.layers.field_embedding import check_field_embedder
from mec_jax.layers.interactions import BilinearInteraction, SqueezeExcitation


class FiBiNET(nnx.Module):
  """``logit = Σ_f w_f + MLP(concat(Bilinear_p(E), Bilinear_q(SENET(E))))``.

  Follows FuxiCTR: two separate bilinear layers (for the raw and the SENET-weighted embeddings),
  ``field_interaction`` bilinear type by default (one ``d×d`` matrix per field pair, the
  strongest variant in the paper's tables), SENET reduction ratio 3 with ReLU excitation, and a
  first-order (LR) term whose bias is the MLP's output bias.

  References:
    Huang et al., "FiBiNET: Combining Feature Importance and Bilinear feature Interaction for
    Click-Through Rate Prediction", RecSys 2019.
  """

  uses_first_order = True  # the logit sums embedding.first_order (memory counts those tables)

  def __init__(
    self,
    embedding: FieldEmbedder,
    *,
    hidden_units: Sequence[int] = (400, 400, 400),
    dropout: float = 0.0,
    batch_norm: bool = False,
    bilinear_type: str = "field_interaction",
    reduction_ratio: float = 3.0,
    excitation_activation: str = "relu",
    rngs: nnx.Rngs,
  ):
    check_field_embedder(embedding, "FiBiNET")
    num_fields, dim = embedding.num_fields, embedding.embed_dim
    if num_fields < 2:
      raise ValueError(f"FiBiNET: needs at least 2 fields for pairs, got {num_fields}")
    self.embedding = embedding
    self.senet = SqueezeExcitation(
      num_fields,
      reduction_ratio=reduction_ratio,
      excitation_activation=excitation_activation,
      rngs=rngs,
    )
    self.bilinear_raw = BilinearInteraction(num_fields, dim, bilinear_type=bilinear_type, rngs=rngs)
    self.bilinear_senet = BilinearInteraction(
      num_fields, dim, bilinear_type=bilinear_type, rngs=rngs
    )
    in_features = num_fields * (num_fields - 1) * dim
    self.mlp = MLP(
      in_features, hidden_units, output_dim=1, dropout=dropout, batch_norm=batch_norm, rngs=rngs
    )

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids``/``values`` ``[batch, num_fields]`` -> logits float32 ``[batch]``."""
    emb = self.embedding(ids, values)
    pairs = jnp.concatenate([self.bilinear_raw(emb), self.bilinear_senet(self.senet(emb))], axis=1)
    first = jnp.sum(self.embedding.first_order(ids, values), axis=-1)
    return first + self.mlp(pairs.reshape(pairs.shape[0], -1))[:, 0]
