"""AutoInt: stacked multi-head self-attention over fields (optionally with an MLP: AutoInt+)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.layers.blocks import MLP, dense
from mec_jax.layers.field_embedding import check_field_embedder
from mec_jax.layers.interactions import MultiHeadSelfAttention


class AutoInt(nnx.Module):
  """``logit = w·flatten(Attn_L(...Attn_1(E))) + b [+ MLP(concat_f e_f)] [+ Σ_f w_f]``.

  ``hidden_units=()`` (the default) is plain AutoInt; a non-empty tuple adds the parallel MLP of
  AutoInt+. ``use_wide`` adds the first-order terms. ``dropout`` applies to attention weights and
  to the MLP.

  References:
    Song et al., "AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural
    Networks", CIKM 2019.
  """

  uses_first_order = False  # set from use_wide; memory counts the first-order tables when True

  def __init__(
    self,
    embedding: FieldEmbedder,
    *,
    hidden_units: Sequence[int] = (),
    dropout: float = 0.0,
    batch_norm: bool = False,
    num_heads: int = 2,
    num_attention_layers: int = 3,
    attention_dim: int = 64,
    use_residual: bool = True,
    use_scale: bool = False,
    layer_norm: bool = False,
    use_wide: bool = False,
    rngs: nnx.Rngs,
  ):
    check_field_embedder(embedding, "AutoInt")
    if num_attention_layers < 1:
      raise ValueError(f"AutoInt: num_attention_layers must be >= 1, got {num_attention_layers}")
    self.embedding = embedding
    widths = [embedding.embed_dim] + [attention_dim] * num_attention_layers
    self.attention = nnx.List(
      [
        MultiHeadSelfAttention(
          a,
          b,
          num_heads,
          dropout=dropout,
          use_residual=use_residual,
          use_scale=use_scale,
          layer_norm=layer_norm,
          rngs=rngs,
        )
        for a, b in zip(widths[:-1], widths[1:], strict=True)
      ]
    )
    self.head = dense(embedding.num_fields * attention_dim, 1, rngs=rngs)
    in_features = embedding.num_fields * embedding.embed_dim
    self.mlp = (
      MLP(
        in_features, hidden_units, output_dim=1, dropout=dropout, batch_norm=batch_norm, rngs=rngs
      )
      if hidden_units
      else None
    )
    self.use_wide = use_wide
    self.uses_first_order = use_wide

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids``/``values`` ``[batch, num_fields]`` -> logits float32 ``[batch]``."""
    emb = self.embedding(ids, values)
    x = emb
    for layer in self.attention:
      x = layer(x)
    logit = self.head(x.reshape(x.shape[0], -1))[:, 0]
    if self.mlp is not None:
      logit = logit + self.mlp(emb.reshape(emb.shape[0], -1))[:, 0]
    if self.use_wide:
      logit = logit + jnp.sum(self.embedding.first_order(ids, values), axis=-1)
    return logit
