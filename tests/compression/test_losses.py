"""MEC loss terms and popularity weights."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mec_jax.compression import losses, pq


def test_popularity_weights_hand_built_counts():
  counts = np.array([0, 1, 2, 3, 4, 7, 8, 15, 16, 1023, 1024, 1025, 2**40])
  expected = [1, 1, 1, 1, 2, 2, 3, 3, 4, 9, 10, 10, 40]
  np.testing.assert_array_equal(losses.popularity_weights(counts), expected)
  assert losses.popularity_weights(counts).dtype == np.float32
  with pytest.raises(ValueError, match="non-negative"):
    losses.popularity_weights(np.array([1, -1]))


def test_weighted_terms_match_numpy_and_ignore_zero_weight_rows():
  rng = np.random.default_rng(0)
  x, x_hat = rng.normal(size=(2, 6, 4))
  w = np.array([1.0, 2.0, 3.0, 1.0, 0.0, 0.0])
  expected = (w * ((x_hat - x) ** 2).sum(1)).sum() / w.sum()
  np.testing.assert_allclose(losses.reconstruction_loss(x_hat, x, w), expected, rtol=1e-5)
  garbage = x_hat.copy()
  garbage[4:] = 1e6  # padding rows carry weight 0
  np.testing.assert_allclose(losses.reconstruction_loss(garbage, x, w), expected, rtol=1e-5)
  vq = losses.vq_loss(jnp.asarray(x), jnp.asarray(x_hat), w, 0.25)
  np.testing.assert_allclose(vq, 1.25 * expected, rtol=1e-5)


def test_vq_gradients_split_between_codebook_and_encoder():
  z, q = jnp.ones((3, 4)), jnp.zeros((3, 4))
  w = jnp.ones(3)
  gz, gq = jax.grad(lambda z, q: losses.vq_loss(z, q, w, 0.25), argnums=(0, 1))(z, q)
  np.testing.assert_allclose(gz, 0.25 * 2 * (z - q) / 3)  # commitment only
  np.testing.assert_allclose(gq, 2 * (q - z) / 3)  # codebook only


def test_one_position_negatives_differ_in_exactly_one_position():
  rng = np.random.default_rng(0)
  codes = jnp.asarray(rng.integers(0, 16, size=(512, 4)), jnp.int32)
  neg = np.asarray(losses.one_position_negatives(jax.random.key(0), codes, 16, 6))
  assert neg.shape == (512, 6, 4)
  diff = neg != np.asarray(codes)[:, None, :]
  assert (diff.sum(-1) == 1).all()
  assert neg.min() >= 0 and neg.max() < 16
  position = diff.argmax(-1)  # [512, 6]
  # Drawn per row and per negative: all positions occur, rows and negatives disagree.
  assert set(np.unique(position)) == {0, 1, 2, 3}
  assert (position != position[:1]).any(axis=1).mean() > 0.5
  assert (position != position[:, :1]).any(axis=1).mean() > 0.5
  counts = np.bincount(position.ravel(), minlength=4) / position.size
  np.testing.assert_allclose(counts, 0.25, atol=0.03)


def test_shared_negative_is_one_vector_for_the_batch():
  codes = jnp.zeros((32, 4), jnp.int32)
  neg = np.asarray(losses.shared_negative_codes(jax.random.key(1), codes, 256))
  assert (neg == neg[:1]).all()


def test_contrastive_loss_matches_numpy():
  rng = np.random.default_rng(2)
  anchor, positive = rng.normal(size=(2, 5, 6))
  negatives = rng.normal(size=(5, 3, 6))
  w = np.array([1.0, 2.0, 1.0, 4.0, 1.0])

  def cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)

  logits = (
    np.concatenate([cos(anchor, positive)[:, None], cos(anchor[:, None], negatives)], 1) / 0.2
  )
  per_row = -logits[:, 0] + np.log(np.exp(logits).sum(1))
  got = losses.contrastive_loss(anchor, positive, negatives, w, 0.2)
  np.testing.assert_allclose(got, (w * per_row).sum() / w.sum(), rtol=1e-5)


def test_balance_penalty_values_and_gradient():
  codebooks = jnp.asarray(np.random.default_rng(3).normal(size=(2, 8, 3)), jnp.float32)
  # Rows sitting on every codeword equally often with a sharp softmax: uniform usage.
  z_sub = jnp.transpose(codebooks, (1, 0, 2))  # [8, 2, 3]
  w = jnp.ones(8)
  assert float(losses.balance_penalty(z_sub, codebooks, w, 1e-3)) == pytest.approx(0.0, abs=1e-4)
  # All rows on codeword 0: the penalty is ln K.
  collapsed = jnp.broadcast_to(codebooks[:, 0], (8, 2, 3))
  assert float(losses.balance_penalty(collapsed, codebooks, w, 1e-3)) == pytest.approx(
    math.log(8), rel=1e-3
  )
  grad_fn = jax.jit(jax.grad(losses.balance_penalty, argnums=(0, 1)), static_argnums=3)
  grads = grad_fn(collapsed, codebooks, w, 1.0)
  assert all(float(jnp.abs(g).sum()) > 0 for g in grads)


def test_balance_regularizer_raises_entropy_of_collapsed_codebook():
  rng = np.random.default_rng(4)
  num_subspaces, codebook_size, sub_dim = 2, 16, 2
  z = jnp.asarray(rng.normal(size=(512, num_subspaces * sub_dim)), jnp.float32)
  z_sub = pq.split_subspaces(z, num_subspaces)
  # Codeword 0 at the data mean, the others bunched 2.5 std away: every row picks code 0.
  codebooks = np.tile(np.array([2.5, 0.0], np.float32), (num_subspaces, codebook_size, 1))
  codebooks += 0.05 * rng.normal(size=codebooks.shape).astype(np.float32)
  codebooks[:, 0] = 0.0
  codebooks = jnp.asarray(codebooks)
  w = jnp.asarray(rng.integers(1, 5, 512), jnp.float32)

  def hard_entropy(books):
    return pq.usage_entropy(pq.nearest_codes(z_sub, books), codebook_size).mean()

  before = hard_entropy(codebooks)
  assert before < 0.2
  tx = optax.adam(0.05)
  state = tx.init(codebooks)
  grad_fn = jax.jit(jax.grad(lambda b: losses.balance_penalty(z_sub, b, w, 1.0)))
  for _ in range(100):
    updates, state = tx.update(grad_fn(codebooks), state)
    codebooks = optax.apply_updates(codebooks, updates)
  assert hard_entropy(codebooks) > before + 0.3


def test_perplexity_penalty_has_no_gradient():
  codes = jnp.array([[0, 1], [0, 2], [0, 3]])
  value = losses.perplexity_penalty(codes, 4, jnp.ones(3))
  p = np.array([1 / 3, 1 / 3, 1 / 3])
  ppl = (1.0 + np.exp(-(p * np.log(p)).sum())) / 2
  np.testing.assert_allclose(value, (ppl - np.log(4)) ** 2, rtol=1e-5)
  grad = jax.grad(lambda w: losses.perplexity_penalty(codes, 4, w))(jnp.ones(3))
  assert float(jnp.abs(grad).sum()) == 0.0
