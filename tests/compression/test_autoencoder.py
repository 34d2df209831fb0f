"""The MEC quantizer network: straight-through gradients, train step, batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mec_jax.compression import autoencoder, training
from mec_jax.compression.mesh import auto_mesh
from mec_jax.compression.settings import QuantizeSettings
from mec_jax.mesh import data_mesh


def _rows(num_rows=256, dim=8, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(num_rows, dim)).astype(np.float32), rng.integers(1, 5, num_rows).astype(
    np.float32
  )


def _model(variant, x, w, encoder="dense"):
  settings = QuantizeSettings(
    variant=variant, num_subspaces=2, codebook_size=8, kmeans_iters=3, encoder=encoder
  )
  return training.init_quantizer(jax.random.key(0), x, w, settings, data_mesh(1)), settings


@pytest.mark.parametrize(
  ("variant", "encoder"),
  [("mec", "dense"), ("no_contrastive", "dense"), ("no_balance", "dense"), ("mec", "block")],
)
def test_straight_through_reaches_the_encoder(variant, encoder):
  x, w = _rows()
  model, settings = _model(variant, x, w, encoder)
  cfg = training.loss_weights(settings)
  assert float(autoencoder.encoder_gradient(model, x, w, jax.random.key(1), cfg)) > 1e-4
  # Reconstruction alone, through the straight-through path.
  rec_only = autoencoder.LossWeights(vq=0.0, bal=0.0, con=0.0)
  assert float(autoencoder.encoder_gradient(model, x, w, jax.random.key(1), rec_only)) > 1e-4


def test_reference_encoder_gets_no_gradient():
  x, w = _rows()
  model, settings = _model("reference", x, w)
  cfg = training.loss_weights(settings)
  assert cfg.reference
  assert float(autoencoder.encoder_gradient(model, x, w, jax.random.key(1), cfg)) == 0.0


def test_block_encoder_keeps_each_sub_code_a_code_of_its_own_slice():
  x, w = _rows()
  model, settings = _model("mec", x, w, "block")
  model.encoder.kernel[...] = jax.random.normal(jax.random.key(3), (8, 8))  # even if dense inside
  moved = x.copy()
  moved[:, 4:] += 5.0  # only table slice 1 changes
  before, after = model(jnp.asarray(x)), model(jnp.asarray(moved))
  np.testing.assert_allclose(before.z[:, :4], after.z[:, :4], atol=1e-5)
  np.testing.assert_array_equal(before.codes[:, 0], after.codes[:, 0])
  np.testing.assert_allclose(before.x_hat[:, :4], after.x_hat[:, :4], atol=1e-5)


def test_no_encoder_trains_codebooks_in_table_space():
  x, w = _rows()
  model, settings = _model("mec", x, w, "none")
  out = model(jnp.asarray(x))
  np.testing.assert_array_equal(out.z, x)
  np.testing.assert_array_equal(out.x_hat, out.q)
  graphdef, params = nnx.split(model, nnx.Param)
  assert set(params) == {"codebooks"}
  rec_only = autoencoder.LossWeights(vq=0.0, bal=0.0, con=0.0)

  def rec(params):
    return autoencoder.mec_loss(nnx.merge(graphdef, params), x, w, jax.random.key(0), rec_only)[0]

  # The reconstruction gradient reaches the codebooks: it is the refit's objective.
  assert float(jnp.linalg.norm(jax.grad(rec)(params)["codebooks"][...])) > 1e-4
  with pytest.raises(ValueError, match="encoder 'none' needs latent_dim"):
    autoencoder.MECQuantizer(8, 4, 2, 8, encoder="none", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="quantize.encoder must be one of"):
    QuantizeSettings(encoder="sparse")


def test_forward_is_hard_quantization():
  x, w = _rows()
  model, _ = _model("mec", x, w)
  out = model(jnp.asarray(x))
  books = np.asarray(model.codebooks[...])
  z = np.asarray(out.z).reshape(-1, 2, 4)
  expected = ((z[:, :, None] - books[None]) ** 2).sum(-1).argmin(-1)
  np.testing.assert_array_equal(out.codes, expected)
  # Identity-initialized encoder and decoder: x_hat is the k-means reconstruction q.
  np.testing.assert_allclose(out.z, x, atol=1e-6)
  np.testing.assert_allclose(out.x_hat, out.q, atol=1e-5)


@pytest.mark.parametrize("variant", ["mec", "reference"])
def test_train_step_lowers_loss_and_keeps_shapes(variant):
  x, w = _rows()
  model, settings = _model(variant, x, w)
  graphdef, params = nnx.split(model, nnx.Param)
  tx = autoencoder.make_optimizer(1e-2)
  mesh = auto_mesh(data_mesh(1))
  run = autoencoder.make_train_epoch(graphdef, tx, training.loss_weights(settings), mesh)
  idx = np.arange(128, dtype=np.int32)[None]  # one step on the same batch, again and again
  state, new_params, history = tx.init(params), params, []
  for i in range(15):
    new_params, state, metrics = run(new_params, state, x[idx], w[idx], jax.random.key(i))
    history.append(metrics)  # losses at the parameters before this step
    if i == 1:  # the first call's inputs were not yet laid out on the mesh
      compiled = run._cache_size()
  # The straight-through objective is a surrogate, not a gradient field (the encoder/codebook scale
  # is free), so for MEC the check is on the reconstruction it is meant to improve.
  term = "loss" if variant == "reference" else "rec"
  assert float(history[-1][term]) < float(history[0][term])
  assert jax.tree.map(jnp.shape, new_params) == jax.tree.map(jnp.shape, params)
  assert run._cache_size() == compiled  # no recompilation across steps


def test_epoch_batches_modes():
  rng = np.random.default_rng(0)
  rows = np.arange(10, 40)
  weights = np.zeros(50, np.float32)
  weights[rows] = rng.integers(1, 5, rows.size)
  idx, w = training.epoch_batches(rng, rows, weights, 8, "weighted")
  assert idx.shape == (4, 8) and sorted(idx.ravel()[:30]) == list(rows)
  np.testing.assert_array_equal(w.ravel()[:30], weights[idx.ravel()[:30]])
  assert (w.ravel()[30:] == 0).all()
  idx, w = training.epoch_batches(rng, rows, weights, 8, "repeated")
  real = idx.ravel()[w.ravel() > 0]
  np.testing.assert_array_equal(np.bincount(real, minlength=50), weights.astype(int))
  idx, w = training.epoch_batches(rng, rows, weights, 8, "sampled")
  assert set(idx.ravel()[w.ravel() > 0]) <= set(rows) and w.max() == 1.0
