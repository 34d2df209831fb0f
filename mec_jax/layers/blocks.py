"""Shared dense blocks of the backbones: `MLP` and the cross networks of DCNv2 and GDCN.

Linear kernels start from Glorot (Xavier) normal and biases from zero, as in FuxiCTR, so the
backbones behave like their reference implementations from the first step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

KERNEL_INIT = nnx.initializers.xavier_normal()


def dense(in_features: int, out_features: int, *, rngs: nnx.Rngs, use_bias: bool = True):
  """``nnx.Linear`` with the house initialization (Glorot-normal kernel, zero bias)."""
  return nnx.Linear(
    in_features, out_features, use_bias=use_bias, kernel_init=KERNEL_INIT, rngs=rngs
  )


class DenseBlock(nnx.Module):
  """Linear -> (BatchNorm) -> activation -> (Dropout), the hidden layer of FuxiCTR's MLP_Block."""

  def __init__(
    self,
    in_features: int,
    out_features: int,
    *,
    rngs: nnx.Rngs,
    dropout: float = 0.0,
    batch_norm: bool = False,
    activation: Callable[[jax.Array], jax.Array] = nnx.relu,
  ):
    # Batch norm removes any bias; a bias before it would only get round-off gradients, which
    # Adam would blow up into lr-sized random steps.
    self.linear = dense(in_features, out_features, use_bias=not batch_norm, rngs=rngs)
    # momentum 0.9 == PyTorch's 0.1: running stats settle within an epoch of a small dataset.
    self.norm = nnx.BatchNorm(out_features, momentum=0.9, rngs=rngs) if batch_norm else None
    self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
    self.activation = activation

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[batch, in_features] -> [batch, out_features]``."""
    x = self.linear(x)
    if self.norm is not None:
      x = self.norm(x)
    x = self.activation(x)
    if self.dropout is not None:
      x = self.dropout(x)
    return x


class MLP(nnx.Module):
  """Stack of `DenseBlock`s, optionally followed by a linear output layer.

  Dropout is active after ``module.train()`` and off after ``module.eval()``; batch norm uses
  batch statistics in train mode and running averages in eval mode.

  Attributes:
    out_features: size of the last dimension of the output.
  """

  def __init__(
    self,
    in_features: int,
    hidden_units: Sequence[int],
    *,
    rngs: nnx.Rngs,
    output_dim: int | None = None,
    dropout: float = 0.0,
    batch_norm: bool = False,
    activation: Callable[[jax.Array], jax.Array] = nnx.relu,
  ):
    hidden_units = [int(h) for h in hidden_units]
    if any(h < 1 for h in hidden_units):
      raise ValueError(f"MLP: hidden_units must be positive, got {hidden_units}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout}")
    if not hidden_units and output_dim is None:
      raise ValueError("MLP: needs hidden_units or an output_dim")
    sizes = [in_features, *hidden_units]
    self.blocks = nnx.List(
      [
        DenseBlock(a, b, rngs=rngs, dropout=dropout, batch_norm=batch_norm, activation=activation)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
      ]
    )
    self.output = dense(sizes[-1], output_dim, rngs=rngs) if output_dim is not None else None
    self.out_features = output_dim if output_dim is not None else sizes[-1]

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[batch, in_features] -> [batch, out_features]``."""
    for block in self.blocks:
      x = block(x)
    if self.output is not None:
      x = self.output(x)
    return x


class CrossNetV2(nnx.Module):
  """DCNv2 cross network: ``x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l`` with full-rank ``W_l``.

  References:
    Wang et al., "DCN V2: Improved Deep & Cross Network ...", WWW 2021.
  """

  def __init__(self, in_features: int, num_layers: int, *, rngs: nnx.Rngs):
    if num_layers < 1:
      raise ValueError(f"CrossNetV2: num_layers must be >= 1, got {num_layers}")
    self.layers = nnx.List([dense(in_features, in_features, rngs=rngs) for _ in range(num_layers)])

  def __call__(self, x0: jax.Array) -> jax.Array:
    """``[batch, in_features] -> [batch, in_features]``."""
    x = x0
    for layer in self.layers:
      x = x0 * layer(x) + x
    return x


class CrossNetMix(nnx.Module):
  """DCN-Mix: low-rank mixture-of-experts cross network.

  Layer l, expert e: ``E_e(x) = x_0 ⊙ (U_{l,e} tanh(C_{l,e} tanh(V_{l,e}ᵀ x_l)) + b_l)``;
  ``x_{l+1} = Σ_e softmax_e(g_eᵀ x_l) E_e(x_l) + x_l``. The gates ``g_e`` are shared by all
  layers (as in the DCNv2 reference code and FuxiCTR's CrossNetMix).

  Attributes:
    u, v: ``nnx.Param`` ``[num_layers, num_experts, in_features, low_rank]``.
    c: ``nnx.Param`` ``[num_layers, num_experts, low_rank, low_rank]``.
    bias: ``nnx.Param`` ``[num_layers, in_features]``.
    gates: ``nnx.Param`` ``[num_experts, in_features]``.

  References:
    Wang et al., "DCN V2", WWW 2021, Section 3.3 (mixture of low-rank DCN).
  """

  def __init__(
    self, in_features: int, num_layers: int, low_rank: int, num_experts: int, *, rngs: nnx.Rngs
  ):
    if num_layers < 1 or low_rank < 1 or num_experts < 1:
      raise ValueError(
        "CrossNetMix: num_layers, low_rank and num_experts must be >= 1, got "
        f"{num_layers}, {low_rank}, {num_experts}"
      )
    shape_lr = (num_layers, num_experts, in_features, low_rank)
    # Per-matrix Glorot: fan_in/fan_out are the last two axes of each stacked matrix.
    init = nnx.initializers.variance_scaling(1.0, "fan_avg", "truncated_normal", batch_axis=(0, 1))
    self.u = nnx.Param(init(rngs.params(), shape_lr))
    self.v = nnx.Param(init(rngs.params(), shape_lr))
    self.c = nnx.Param(init(rngs.params(), (num_layers, num_experts, low_rank, low_rank)))
    self.bias = nnx.Param(jnp.zeros((num_layers, in_features), jnp.float32))
    self.gates = nnx.Param(KERNEL_INIT(rngs.params(), (num_experts, in_features)))
    self.num_layers = num_layers

  def __call__(self, x0: jax.Array) -> jax.Array:
    """``[batch, in_features] -> [batch, in_features]``."""
    x = x0
    for layer in range(self.num_layers):
      h = jnp.tanh(jnp.einsum("bd,edr->ber", x, self.v[layer]))
      h = jnp.tanh(jnp.einsum("esr,ber->bes", self.c[layer], h))
      experts = x0[:, None, :] * (jnp.einsum("eds,bes->bed", self.u[layer], h) + self.bias[layer])
      weights = jax.nn.softmax(jnp.einsum("bd,ed->be", x, self.gates[...]), axis=-1)
      x = jnp.einsum("bed,be->bd", experts, weights) + x
    return x


class GatedCrossNet(nnx.Module):
  """GDCN gated cross network: ``x_{l+1} = x_0 ⊙ (W_l x_l + b_l) ⊙ σ(W_g,l x_l) + x_l``.

  ``b_l`` starts from U(0, 1) as in the reference code.

  References:
    Wang et al., "Towards Deeper, Lighter and Interpretable Cross Network for CTR Prediction"
    (GDCN), CIKM 2023.
  """

  def __init__(self, in_features: int, num_layers: int, *, rngs: nnx.Rngs):
    if num_layers < 1:
      raise ValueError(f"GatedCrossNet: num_layers must be >= 1, got {num_layers}")
    self.cross = nnx.List(
      [dense(in_features, in_features, use_bias=False, rngs=rngs) for _ in range(num_layers)]
    )
    self.gate = nnx.List(
      [dense(in_features, in_features, use_bias=False, rngs=rngs) for _ in range(num_layers)]
    )
    self.bias = nnx.Param(jax.random.uniform(rngs.params(), (num_layers, in_features)))

  def __call__(self, x0: jax.Array) -> jax.Array:
    """``[batch, in_features] -> [batch, in_features]``."""
    x = x0
    for layer, (cross, gate) in enumerate(zip(self.cross, self.gate, strict=True)):
      x = x0 * (cross(x) + self.bias[layer]) * jax.nn.sigmoid(gate(x)) + x
    return x
