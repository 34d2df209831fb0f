"""FM, inner products, SENET, bilinear, self-attention and fusion layers against numpy."""

import itertools

import jax
import numpy as np
import pytest
from flax import nnx

from mec_jax.layers.interactions import (
  BilinearInteraction,
  InteractionAggregation,
  MultiHeadSelfAttention,
  SqueezeExcitation,
  fm_pairwise,
  pairwise_inner_products,
)

RNG = np.random.default_rng(0)
EMB = RNG.normal(size=(3, 4, 5)).astype(np.float32)  # [batch, fields, dim]
PAIRS = list(itertools.combinations(range(4), 2))


def _w(layer):
  return np.asarray(layer.kernel[...])


def test_fm_pairwise_equals_brute_force():
  expected = sum(np.sum(EMB[:, i] * EMB[:, j], -1) for i, j in PAIRS)
  np.testing.assert_allclose(jax.jit(fm_pairwise)(EMB), expected, rtol=1e-5, atol=1e-5)


def test_pairwise_inner_products_order_and_values():
  expected = np.stack([np.sum(EMB[:, i] * EMB[:, j], -1) for i, j in PAIRS], axis=1)
  np.testing.assert_allclose(pairwise_inner_products(EMB), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_squeeze_excitation(activation):
  se = SqueezeExcitation(4, reduction_ratio=2, excitation_activation=activation, rngs=nnx.Rngs(0))
  z = EMB.mean(-1)
  a = np.maximum(z @ _w(se.squeeze), 0) @ _w(se.excite)
  a = np.maximum(a, 0) if activation == "relu" else 1 / (1 + np.exp(-a))
  np.testing.assert_allclose(se(EMB), EMB * a[:, :, None], rtol=1e-5, atol=1e-6)
  assert _w(se.squeeze).shape == (4, 2)


@pytest.mark.parametrize("kind", ["field_all", "field_each", "field_interaction"])
def test_bilinear_interaction(kind):
  layer = BilinearInteraction(4, 5, bilinear_type=kind, rngs=nnx.Rngs(0))
  w = np.asarray(layer.weight[...])
  expected = []
  for p, (i, j) in enumerate(PAIRS):
    matrix = w[{"field_all": 0, "field_each": i, "field_interaction": p}[kind]]
    expected.append((EMB[:, i] @ matrix) * EMB[:, j])
  np.testing.assert_allclose(layer(EMB), np.stack(expected, 1), rtol=1e-4, atol=1e-5)


def test_bilinear_rejects_unknown_type():
  with pytest.raises(ValueError, match="bilinear_type"):
    BilinearInteraction(3, 2, bilinear_type="pairwise", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("use_scale", [False, True])
def test_self_attention_matches_numpy(use_scale):
  layer = MultiHeadSelfAttention(5, 6, 2, use_scale=use_scale, rngs=nnx.Rngs(0))
  q, k, v = (EMB @ _w(m) for m in (layer.query, layer.key, layer.value))
  out = np.zeros((3, 4, 6))
  for h in range(2):
    cols = slice(3 * h, 3 * h + 3)
    scores = np.einsum("bqd,bkd->bqk", q[..., cols], k[..., cols])
    scores = scores / np.sqrt(3) if use_scale else scores
    att = np.exp(scores - scores.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    out[..., cols] = att @ v[..., cols]
  expected = np.maximum(out + EMB @ _w(layer.residual), 0)
  np.testing.assert_allclose(layer(EMB), expected, rtol=1e-4, atol=1e-5)


def test_interaction_aggregation_matches_numpy():
  layer = InteractionAggregation(4, 6, 2, rngs=nnx.Rngs(0))
  x, y = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 6))
  w = np.asarray(layer.bilinear[...])
  bilinear = sum(
    np.einsum("bi,ij,bj->b", x[:, 2 * h : 2 * h + 2], w[h], y[:, 3 * h : 3 * h + 3])
    for h in range(2)
  )
  lin = lambda m, t: t @ _w(m)[:, 0] + np.asarray(m.bias[...])[0]
  expected = lin(layer.linear_x, x) + lin(layer.linear_y, y) + bilinear
  out = layer(x.astype(np.float32), y.astype(np.float32))
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="multiples of num_heads"):
    InteractionAggregation(5, 6, 2, rngs=nnx.Rngs(0))
