"""MLP and cross networks against numpy re-implementations."""

import jax
import numpy as np
import pytest
from flax import nnx

from mec_jax.layers.blocks import MLP, CrossNetMix, CrossNetV2, GatedCrossNet


def _linear(layer):
  kernel = np.asarray(layer.kernel[...])
  bias = np.asarray(layer.bias[...]) if layer.bias is not None else 0.0
  return lambda x: x @ kernel + bias


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_cross_net_v2_matches_numpy():
  net = CrossNetV2(5, 2, rngs=nnx.Rngs(0))
  for layer in net.layers:  # non-zero biases so they are tested
    layer.bias[...] = jax.random.normal(jax.random.key(1), (5,))
  x0 = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
  x = x0
  for layer in net.layers:
    x = x0 * _linear(layer)(x) + x
  np.testing.assert_allclose(jax.jit(lambda n, v: n(v))(net, x0), x, rtol=1e-5, atol=1e-6)


def test_cross_net_mix_matches_numpy():
  net = CrossNetMix(6, 2, low_rank=3, num_experts=2, rngs=nnx.Rngs(0))
  net.bias[...] = jax.random.normal(jax.random.key(1), (2, 6))
  u, v, c = (np.asarray(p[...]) for p in (net.u, net.v, net.c))
  bias, gates = np.asarray(net.bias[...]), np.asarray(net.gates[...])
  x0 = np.random.default_rng(0).normal(size=(3, 6))
  x = x0
  for layer in range(2):
    experts, scores = [], []
    for e in range(2):
      h = np.tanh(c[layer, e] @ np.tanh(v[layer, e].T @ x.T))  # [r, batch]
      experts.append(x0 * ((u[layer, e] @ h).T + bias[layer]))
      scores.append(x @ gates[e])
    weights = np.exp(scores) / np.exp(scores).sum(0)  # softmax over experts, [E, batch]
    x = sum(weights[e][:, None] * experts[e] for e in range(2)) + x
  np.testing.assert_allclose(net(x0.astype(np.float32)), x, rtol=1e-4, atol=1e-5)


def test_gated_cross_net_matches_numpy():
  net = GatedCrossNet(4, 3, rngs=nnx.Rngs(0))
  bias = np.asarray(net.bias[...])
  assert bias.min() >= 0 and bias.max() <= 1  # U(0, 1) init
  x0 = np.random.default_rng(1).normal(size=(5, 4))
  x = x0
  for layer in range(3):
    cross, gate = _linear(net.cross[layer]), _linear(net.gate[layer])
    x = x0 * (cross(x) + bias[layer]) * _sigmoid(gate(x)) + x
  np.testing.assert_allclose(net(x0.astype(np.float32)), x, rtol=1e-4, atol=1e-5)


def test_mlp_matches_numpy_and_dropout_follows_mode():
  mlp = MLP(3, (4, 2), output_dim=1, dropout=0.5, rngs=nnx.Rngs(params=0, dropout=1))
  x = np.random.default_rng(2).normal(size=(64, 3)).astype(np.float32)
  h = x
  for block in mlp.blocks:
    h = np.maximum(_linear(block.linear)(h), 0.0)
  expected = _linear(mlp.output)(h)
  mlp.eval()
  np.testing.assert_allclose(mlp(x), expected, rtol=1e-5, atol=1e-6)
  mlp.train()
  assert not np.allclose(mlp(x), expected)  # dropout is active in train mode
  assert mlp.out_features == 1


def test_mlp_batch_norm_uses_batch_stats_in_train_mode():
  mlp = MLP(2, (3,), batch_norm=True, rngs=nnx.Rngs(0))
  x = np.random.default_rng(3).normal(size=(32, 2)).astype(np.float32) * 5 + 3
  mlp.train()
  pre = _linear(mlp.blocks[0].linear)(x)
  normed = (pre - pre.mean(0)) / np.sqrt(pre.var(0) + 1e-5)
  np.testing.assert_allclose(mlp(x), np.maximum(normed, 0), rtol=1e-4, atol=1e-4)
  assert not np.allclose(mlp.blocks[0].norm.mean[...], 0.0)  # running stats moved


def test_mlp_validates_arguments():
  with pytest.raises(ValueError, match="dropout"):
    MLP(3, (4,), dropout=1.0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="positive"):
    MLP(3, (4, 0), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="num_layers"):
    CrossNetV2(3, 0, rngs=nnx.Rngs(0))
