"""Feature-interaction layers over a ``[batch, num_fields, dim]`` field-embedding tensor.

FM's pairwise term, PNN's inner products, FiBiNET's SENET and bilinear interaction, AutoInt's
multi-head self-attention and FinalMLP's bilinear fusion. Pairs ``(i, j)`` are always enumerated
with ``i < j`` in row-major order (``numpy.triu_indices(num_fields, 1)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.layers.blocks import dense


def fm_pairwise(emb: jax.Array) -> jax.Array:
  """FM second-order term ``Σ_{i<j} <e_i, e_j>`` in O(F·d).

  Args:
    emb: ``[batch, num_fields, dim]``.

  Returns:
    ``[batch]``.
  """
  square_of_sum = jnp.square(jnp.sum(emb, axis=1))
  sum_of_square = jnp.sum(jnp.square(emb), axis=1)
  return 0.5 * jnp.sum(square_of_sum - sum_of_square, axis=-1)


def pairwise_inner_products(emb: jax.Array) -> jax.Array:
  """Inner products of all field pairs (IPNN's product layer).

  Args:
    emb: ``[batch, num_fields, dim]``.

  Returns:
    ``[batch, num_fields * (num_fields - 1) / 2]``, pair order of ``numpy.triu_indices``.
  """
  left, right = np.triu_indices(emb.shape[1], 1)
  return jnp.einsum("bpd,bpd->bp", emb[:, left], emb[:, right])


class SqueezeExcitation(nnx.Module):
  """FiBiNET's SENET: re-weights each field by ``A = act(W2 relu(W1 mean_d(e)))``.

  References:
    Huang et al., "FiBiNET: Combining Feature Importance and Bilinear feature Interaction for
    Click-Through Rate Prediction", RecSys 2019.
  """

  def __init__(
    self,
    num_fields: int,
    *,
    rngs: nnx.Rngs,
    reduction_ratio: float = 3.0,
    excitation_activation: str = "relu",
  ):
    if excitation_activation not in ("relu", "sigmoid"):
      raise ValueError(
        f"SqueezeExcitation: excitation_activation must be 'relu' or 'sigmoid', "
        f"got {excitation_activation!r}"
      )
    reduced = max(1, int(num_fields / reduction_ratio))
    self.squeeze = dense(num_fields, reduced, use_bias=False, rngs=rngs)
    self.excite = dense(reduced, num_fields, use_bias=False, rngs=rngs)
    self.excitation_activation = excitation_activation

  def __call__(self, emb: jax.Array) -> jax.Array:
    """``[batch, num_fields, dim] -> [batch, num_fields, dim]``."""
    weights = self.excite(nnx.relu(self.squeeze(jnp.mean(emb, axis=-1))))
    act = nnx.relu if self.excitation_activation == "relu" else jax.nn.sigmoid
    return emb * act(weights)[:, :, None]


BILINEAR_TYPES = ("field_all", "field_each", "field_interaction")


class BilinearInteraction(nnx.Module):
  """FiBiNET bilinear interaction ``p_ij = (e_i W) ⊙ e_j`` for every pair ``i < j``.

  ``W`` is one ``[d, d]`` matrix (``field_all``), one per left field (``field_each``) or one per
  pair (``field_interaction``, the most expressive and FuxiCTR's default).
  """

  def __init__(self, num_fields: int, dim: int, *, rngs: nnx.Rngs, bilinear_type: str):
    if bilinear_type not in BILINEAR_TYPES:
      raise ValueError(
        f"BilinearInteraction: bilinear_type must be one of {BILINEAR_TYPES}, got {bilinear_type!r}"
      )
    num_pairs = num_fields * (num_fields - 1) // 2
    leading = {"field_all": 1, "field_each": num_fields, "field_interaction": num_pairs}
    init = nnx.initializers.variance_scaling(1.0, "fan_avg", "truncated_normal", batch_axis=0)
    self.weight = nnx.Param(init(rngs.params(), (leading[bilinear_type], dim, dim)))
    self.bilinear_type = bilinear_type
    self.num_fields = num_fields

  def __call__(self, emb: jax.Array) -> jax.Array:
    """``[batch, num_fields, dim] -> [batch, num_pairs, dim]``."""
    left, right = np.triu_indices(self.num_fields, 1)
    w = self.weight[...]
    if self.bilinear_type == "field_all":
      hidden = jnp.einsum("bpd,de->bpe", emb[:, left], w[0])
    elif self.bilinear_type == "field_each":
      hidden = jnp.einsum("bpd,pde->bpe", emb[:, left], w[left])
    else:
      hidden = jnp.einsum("bpd,pde->bpe", emb[:, left], w)
    return hidden * emb[:, right]


class MultiHeadSelfAttention(nnx.Module):
  """AutoInt's interacting layer: multi-head self-attention over fields, residual, ReLU.

  ``out = relu(MHA(x) + W_res x)`` (``W_res`` only when the width changes). Attention scores are
  unscaled dot products unless ``use_scale``, following the AutoInt paper and FuxiCTR.

  References:
    Song et al., "AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural
    Networks", CIKM 2019.
  """

  def __init__(
    self,
    in_features: int,
    attention_dim: int,
    num_heads: int,
    *,
    rngs: nnx.Rngs,
    dropout: float = 0.0,
    use_residual: bool = True,
    use_scale: bool = False,
    layer_norm: bool = False,
  ):
    if num_heads < 1 or attention_dim % num_heads:
      raise ValueError(
        f"MultiHeadSelfAttention: attention_dim {attention_dim} must be a positive multiple of "
        f"num_heads {num_heads}"
      )
    self.query = dense(in_features, attention_dim, use_bias=False, rngs=rngs)
    self.key = dense(in_features, attention_dim, use_bias=False, rngs=rngs)
    self.value = dense(in_features, attention_dim, use_bias=False, rngs=rngs)
    needs_projection = use_residual and in_features != attention_dim
    self.residual = (
      dense(in_features, attention_dim, use_bias=False, rngs=rngs) if needs_projection else None
    )
    self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
    self.norm = nnx.LayerNorm(attention_dim, rngs=rngs) if layer_norm else None
    self.num_heads = num_heads
    self.head_dim = attention_dim // num_heads
    self.use_residual = use_residual
    self.use_scale = use_scale

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[batch, num_fields, in_features] -> [batch, num_fields, attention_dim]``."""
    batch, fields, _ = x.shape

    def heads(y):
      return y.reshape(batch, fields, self.num_heads, self.head_dim)

    q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    if self.use_scale:
      scores = scores / np.sqrt(self.head_dim)
    attention = jax.nn.softmax(scores, axis=-1)
    if self.dropout is not None:
      attention = self.dropout(attention)
    out = jnp.einsum("bhqk,bkhd->bqhd", attention, v).reshape(batch, fields, -1)
    if self.use_residual:
      out = out + (self.residual(x) if self.residual is not None else x)
    if self.norm is not None:
      out = self.norm(out)
    return nnx.relu(out)


class InteractionAggregation(nnx.Module):
  """FinalMLP's multi-head bilinear fusion of two stream outputs into one logit.

  ``logit = w_xᵀx + w_yᵀy + Σ_h x_hᵀ W_h y_h`` where ``x_h, y_h`` are the h-th equal chunks.

  References:
    Mao et al., "FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction", AAAI 2023.
  """

  def __init__(self, x_dim: int, y_dim: int, num_heads: int, *, rngs: nnx.Rngs):
    if num_heads < 1 or x_dim % num_heads or y_dim % num_heads:
      raise ValueError(
        f"InteractionAggregation: stream widths {x_dim}, {y_dim} must be multiples of "
        f"num_heads {num_heads}"
      )
    self.linear_x = dense(x_dim, 1, rngs=rngs)
    self.linear_y = dense(y_dim, 1, rngs=rngs)
    shape = (num_heads, x_dim // num_heads, y_dim // num_heads)
    # Glorot over the flattened [H·hx·hy, 1] matrix, as the reference: the x_hᵀW_h y_h sum has
    # hx·hy terms, so a per-head fan would start the logits far from zero.
    std = np.sqrt(2.0 / (np.prod(shape) + 1))
    self.bilinear = nnx.Param(std * jax.random.normal(rngs.params(), shape, jnp.float32))
    self.num_heads = num_heads

  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    """``[batch, x_dim], [batch, y_dim] -> [batch]``."""
    heads_x = x.reshape(x.shape[0], self.num_heads, -1)
    heads_y = y.reshape(y.shape[0], self.num_heads, -1)
    bilinear = jnp.einsum("bhx,hxy,bhy->b", heads_x, self.bilinear[...], heads_y)
    return self.linear_x(x)[:, 0] + self.linear_y(y)[:, 0] + bilinear
