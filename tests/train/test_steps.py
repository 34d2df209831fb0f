"""Train/eval steps: loss goes down, no recompilation, lr overrides, non-Param state carried."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mec_jax import mesh as meshes
from mec_jax.layers import CodebookEmbed, Codes, Embed, FieldEmbedding
from mec_jax.models import registry
from mec_jax.train import optimizer as optim
from mec_jax.train import steps

VOCABS = [20, 10, 1]


def _batch(rows=128, seed=0):
  rng = np.random.default_rng(seed)
  ids = np.stack([rng.integers(0, v, rows) for v in VOCABS], axis=1).astype(np.int32)
  label = ((ids[:, 0] % 2) ^ (ids[:, 1] % 3 == 0)).astype(np.float32)
  return {"ids": ids, "values": np.ones(ids.shape, np.float32), "label": label}


def _model(tables=None, **hparams):
  rngs = nnx.Rngs(params=0, dropout=1)
  tables = tables or [Embed(v, 4, rngs=rngs, init_std=0.1) for v in VOCABS]
  hparams = {"hidden_units": (8,)} | hparams
  return registry.build_model("deepfm", FieldEmbedding(tables), rngs=rngs, **hparams)


def _setup(model, lr=1e-2, **kwargs):
  mesh = meshes.data_mesh(jax.devices()[:1])
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  tx = optim.make_optimizer(lr, lr_overrides=kwargs.pop("lr_overrides", None))
  state = jax.device_put(steps.init_train_state(params, other, tx), meshes.replicated(mesh))
  step = steps.make_train_step(
    graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(0), **kwargs
  )
  return mesh, state, step


def _shapes(tree):
  return jax.tree.map(lambda x: (x.shape, x.dtype), tree)


def test_train_step_lowers_loss_without_recompiling():
  mesh, state, step = _setup(_model(dropout=0.1, batch_norm=True))
  batch = meshes.shard_batch(_batch(), mesh)
  shapes = _shapes(state)
  losses = []
  for _ in range(3):
    state, loss = step(state, batch)
    losses.append(float(loss))
  assert losses[-1] < losses[0]
  assert _shapes(state) == shapes
  assert int(state.step) == 3
  state = state.replace(opt_state=optim.set_lr_scale(state.opt_state, 0.1))
  assert optim.lr_scale(state.opt_state) == pytest.approx(0.1)
  state, _ = step(state, meshes.shard_batch(_batch(seed=1), mesh))
  assert step._cache_size() == 1  # new data and a new lr scale reuse the compiled step


def test_lr_scale_zero_freezes_params():
  mesh, state, step = _setup(_model())
  before = jax.device_get(state.params)
  state = state.replace(opt_state=optim.set_lr_scale(state.opt_state, 0.0))
  state, _ = step(state, meshes.shard_batch(_batch(), mesh))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), before)


def test_lr_overrides_apply_per_parameter_path():
  model = _model()
  mesh, state, step = _setup(model, lr=1e-2, lr_overrides={"tables/0/": 1e-6})
  labels = optim.param_labels(nnx.state(model, nnx.Param), {"tables/0/": 1e-6})
  flat = {
    jax.tree_util.keystr(p, simple=True, separator="/"): v
    for p, v in jax.tree_util.tree_flatten_with_path(labels)[0]
  }
  assert flat["embedding/tables/0/embedding/value"] == "tables/0/"
  assert flat["embedding/tables/1/embedding/value"] == "default"
  before = jax.device_get(state.params)
  state, _ = step(state, meshes.shard_batch(_batch(), mesh))
  after = jax.device_get(state.params)
  change = lambda f: np.abs(
    after["embedding"]["tables"][f]["embedding"][...]
    - before["embedding"]["tables"][f]["embedding"][...]
  ).max()
  assert change(0) < 1e-5 < change(1)  # Adam's first step moves each weight by ~lr


def test_make_optimizer_rejects_bad_rates():
  with pytest.raises(ValueError, match="'codebooks' must be >= 0"):
    optim.make_optimizer(1e-3, lr_overrides={"codebooks": -1e-3})


def test_zero_learning_rate_freezes():
  params = {"codebooks": jnp.ones(3), "mlp": jnp.ones(2)}
  tx = optim.make_optimizer(0.0, lr_overrides={"codebooks": 1e-1})
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(updates["mlp"]), 0.0)
  assert np.all(np.asarray(updates["codebooks"]) < 0)


def test_codes_are_carried_but_never_optimized():
  rngs = nnx.Rngs(0)
  codebook = CodebookEmbed(20, 2, 4, 2, rngs=rngs)
  model = _model([codebook] + [Embed(v, 4, rngs=rngs) for v in VOCABS[1:]])
  codes = np.asarray(codebook.codes[...])
  mesh, state, step = _setup(model)
  assert not any(
    isinstance(v, Codes)
    for v in jax.tree.leaves(state.params, is_leaf=lambda x: isinstance(x, nnx.Variable))
  )
  num_params = len(jax.tree.leaves(state.params))
  adam_mu = state.opt_state[1][0].mu
  assert len(jax.tree.leaves(adam_mu)) == num_params
  books = np.asarray(state.params["embedding"]["tables"][0]["codebooks"][...])
  for _ in range(2):
    state, _ = step(state, meshes.shard_batch(_batch(), mesh))
  np.testing.assert_array_equal(state.other["embedding"]["tables"][0]["codes"][...], codes)
  assert not np.allclose(state.params["embedding"]["tables"][0]["codebooks"][...], books)


def test_embedding_regularizer_shrinks_embeddings():
  def norm_after(weight):
    mesh, state, step = _setup(_model(hidden_units=(2,)), lr=1e-2, embedding_regularizer=weight)
    for _ in range(5):
      state, _ = step(state, meshes.shard_batch(_batch(), mesh))
    return float(jnp.sum(jnp.square(state.params["embedding"]["tables"][0]["embedding"][...])))

  assert norm_after(10.0) < 0.5 * norm_after(0.0)


def test_eval_step_gives_model_probabilities():
  model = _model(batch_norm=True, dropout=0.5)
  mesh = meshes.data_mesh(jax.devices()[:1])
  model.eval()
  graphdef, params, rng_state, other = steps.split_model(model)
  eval_step = steps.make_eval_step(graphdef, rng_state, mesh)
  batch = _batch(rows=16) | {"mask": np.r_[np.ones(10), np.zeros(6)].astype(np.float32)}
  probs, label, mask = eval_step(params, other, meshes.shard_batch(batch, mesh))
  expected = jax.nn.sigmoid(model(batch["ids"], batch["values"]))
  np.testing.assert_allclose(probs, expected, rtol=1e-5)
  np.testing.assert_array_equal(mask, batch["mask"])
  np.testing.assert_array_equal(label, batch["label"])
