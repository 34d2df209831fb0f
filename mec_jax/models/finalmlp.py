"""FinalMLP: two MLP streams with feature-selection gates, fused by a multi-head bilinear layer."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.layers.blocks import MLP
from mec_jax.layers.field_embedding import check_field_embedder
from mec_jax.layers.interactions import InteractionAggregation


class FeatureGate(nnx.Module):
  """Context-free feature selection: ``gate = 2·σ(MLP(c))`` with a learned context vector ``c``.

  Without context fields (FuxiCTR's default ``fs*_context=[]``) the gate input is a learned
  ``[dim]`` vector starting at 0, so the gate is a learned per-feature scaling in ``(0, 2)``.
  """

  def __init__(self, dim: int, out_features: int, hidden_units: Sequence[int], *, rngs: nnx.Rngs):
    self.context = nnx.Param(jnp.zeros((dim,), jnp.float32))
    self.mlp = MLP(dim, hidden_units, output_dim=out_features, rngs=rngs)

  def __call__(self) -> jax.Array:
    """Returns the gate ``[out_features]``."""
    return 2.0 * jax.nn.sigmoid(self.mlp(self.context[None, :])[0])


class FinalMLP(nnx.Module):
  """``logit = Fusion(MLP_1(g_1 ⊙ x), MLP_2(g_2 ⊙ x))``, ``x = concat_f e_f``.

  ``hidden_units`` sizes stream 1 and ``mlp2_hidden_units`` stream 2 (None: same as stream 1);
  ``dropout``/``batch_norm`` apply to both. Context-free feature selection and two fusion heads
  follow FuxiCTR's FinalMLP template; the widths are the 400x3 MLP common in the BARS benchmark
  (FuxiCTR's template uses 1024-wide streams, too slow for CPU runs).

  References:
    Mao et al., "FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction", AAAI 2023.
  """

  uses_first_order = False  # no first-order (LR) terms

  def __init__(
    self,
    embedding: FieldEmbedder,
    *,
    hidden_units: Sequence[int] = (400, 400, 400),
    mlp2_hidden_units: Sequence[int] | None = None,
    dropout: float = 0.0,
    batch_norm: bool = False,
    use_feature_selection: bool = True,
    fs_hidden_units: Sequence[int] = (800,),
    fusion_heads: int = 2,
    rngs: nnx.Rngs,
  ):
    check_field_embedder(embedding, "FinalMLP")
    if not hidden_units:
      raise ValueError("FinalMLP: hidden_units must not be empty")
    mlp2_hidden_units = hidden_units if mlp2_hidden_units is None else mlp2_hidden_units
    if not mlp2_hidden_units:
      raise ValueError("FinalMLP: mlp2_hidden_units must not be empty")
    self.embedding = embedding
    dim = embedding.embed_dim
    in_features = embedding.num_fields * dim
    kwargs = dict(dropout=dropout, batch_norm=batch_norm, rngs=rngs)
    self.mlp1 = MLP(in_features, hidden_units, **kwargs)
    self.mlp2 = MLP(in_features, mlp2_hidden_units, **kwargs)
    if use_feature_selection:
      self.gate1 = FeatureGate(dim, in_features, fs_hidden_units, rngs=rngs)
      self.gate2 = FeatureGate(dim, in_features, fs_hidden_units, rngs=rngs)
    else:
      self.gate1 = self.gate2 = None
    self.fusion = InteractionAggregation(
      self.mlp1.out_features, self.mlp2.out_features, fusion_heads, rngs=rngs
    )

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids``/``values`` ``[batch, num_fields]`` -> logits float32 ``[batch]``."""
    emb = self.embedding(ids, values)
    flat = emb.reshape(emb.shape[0], -1)
    x1 = flat if self.gate1 is None else flat * self.gate1()
    x2 = flat if self.gate2 is None else flat * self.gate2()
    return self.fusion(self.mlp1(x1), self.mlp2(x2))
