"""train.embedding_l2 / train.net_l2: numpy references, sparse == dense on touched rows, 0 = today."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import toy_sparse
from flax import nnx

from configs import default
from mec_jax import mesh as meshes
from mec_jax.errors import ConfigError
from mec_jax.train import loop, losses, sparse, steps

VOCABS = [30, 20, 3]  # fields 0 and 1 are row-sparse at MIN_ROWS
MIN_ROWS = 15


def _batch(seed, rows=64, high=(10, 6, 3)):
  """Ids from a few rows only: many repeats, most rows untouched."""
  rng = np.random.default_rng(seed)
  ids = np.stack([rng.integers(0, h, rows) for h in high], axis=1).astype(np.int32)
  label = ((ids[:, 0] % 2) ^ (ids[:, 1] % 3 == 0)).astype(np.float32)
  return {"ids": ids, "values": np.ones(ids.shape, np.float32), "label": label}


def _model_with_biases():
  """The toy DeepFM with non-zero first-order weights (they start at 0)."""
  model = toy_sparse.model(VOCABS)
  rng = np.random.default_rng(7)
  for table in model.embedding.tables:
    table.bias[...] = jnp.asarray(rng.normal(size=table.vocab_size), jnp.float32)
  return model


def _numpy_embedding_l2(weight, model, ids):
  total = 0.0
  for f, table in enumerate(model.embedding.tables):
    rows = np.unique(ids[:, f])
    emb = np.asarray(table.embedding[...], np.float64)[rows]
    bias = np.asarray(table.bias[...], np.float64)[rows]
    total += np.sum(emb**2) + np.sum(bias**2)
  return 0.5 * weight * total


def test_embedding_l2_matches_numpy_each_touched_row_once():
  model = _model_with_biases()
  ids = _batch(0)["ids"]
  got = losses.embedding_l2(0.3, model.embedding, jnp.asarray(ids))
  np.testing.assert_allclose(float(got), _numpy_embedding_l2(0.3, model, ids), rtol=1e-5)
  # Per unique row, not per occurrence: repeating the batch changes nothing.
  twice = losses.embedding_l2(0.3, model.embedding, jnp.asarray(np.concatenate([ids, ids])))
  np.testing.assert_allclose(float(twice), float(got), rtol=1e-6)


def test_embedding_l2_gradient_is_weight_times_row_on_touched_rows_only():
  model = _model_with_biases()
  ids = _batch(1)["ids"]
  graphdef, params = nnx.split(model, nnx.Param)

  def penalty(params):
    return losses.embedding_l2(0.3, nnx.merge(graphdef, params).embedding, jnp.asarray(ids))

  grads = jax.grad(penalty)(params)
  for f, table in enumerate(model.embedding.tables):
    touched = np.zeros(table.vocab_size, bool)
    touched[ids[:, f]] = True
    for key in ("embedding", "bias"):
      want = 0.3 * np.asarray(getattr(table, key)[...])
      want[~touched] = 0.0
      got = np.asarray(grads["embedding"]["tables"][f][key][...])
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)


def _setup(min_rows, embedding_l2=None, net_l2=None, lr=0.5):
  """SGD everywhere (Optax and row-wise), so a step moves each row by -lr * its gradient.

  A weight left None is not passed to `make_train_step` (its default).
  """
  model = toy_sparse.model(VOCABS)
  mesh = meshes.data_mesh(jax.devices()[:1])
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  tx = optax.chain(optax.sgd(lr), optax.inject_hyperparams(optax.scale)(step_size=1.0))
  fields = sparse.find_sparse_fields(model, min_rows=min_rows, rate_of_path=lambda _: lr)
  state, shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer="sgd"
  )
  weights = {"embedding_l2": embedding_l2, "net_l2": net_l2}
  step = steps.make_train_step(
    graphdef,
    rng_state,
    tx,
    mesh,
    dropout_key=jax.random.key(0),
    sparse_fields=fields,
    sparse_optimizer="sgd",
    state_sharding=shardings,
    **{key: value for key, value in weights.items() if value is not None},
  )
  return fields, mesh, state, step


def _tables(state, fields):
  params = jax.device_get(sparse.merge_tables(state.params, sparse.tables_of(state.sparse), fields))
  return [np.asarray(params["embedding"]["tables"][f]["embedding"][...]) for f in range(3)]


def test_sparse_embedding_l2_equals_dense_on_touched_rows_and_spares_the_rest():
  weight = 2.0
  _, mesh, dense_state, dense_step = _setup(0, weight)
  fields, _, sparse_state, sparse_step = _setup(MIN_ROWS, weight)
  _, _, plain_state, plain_step = _setup(MIN_ROWS)
  assert [f.field for f in fields] == [0, 1]
  before = _tables(sparse_state, fields)
  batch = _batch(2)
  dense_state, dense_loss = dense_step(dense_state, meshes.shard_batch(batch, mesh))
  sparse_state, sparse_loss = sparse_step(sparse_state, meshes.shard_batch(batch, mesh))
  plain_state, _ = plain_step(plain_state, meshes.shard_batch(batch, mesh))
  np.testing.assert_allclose(float(sparse_loss), float(dense_loss), rtol=1e-6)
  dense, sparse_, plain = (
    _tables(dense_state, ()),
    _tables(sparse_state, fields),
    _tables(plain_state, fields),
  )
  for f in range(3):
    np.testing.assert_allclose(sparse_[f], dense[f], rtol=1e-5, atol=1e-7)
    touched = np.zeros(VOCABS[f], bool)
    touched[batch["ids"][:, f]] = True
    # Untouched rows: no penalty gradient (SGD leaves them exactly as they were).
    np.testing.assert_array_equal(dense[f][~touched], before[f][~touched])
    # Touched rows: the penalty's step, -lr * weight * row, on top of the plain step.
    np.testing.assert_allclose(
      sparse_[f][touched], plain[f][touched] - 0.5 * weight * before[f][touched], atol=1e-6
    )


def test_net_l2_is_the_hand_formula_over_non_embedding_weights():
  model = toy_sparse.model(VOCABS)
  params = nnx.state(model, nnx.Param)
  block, out = model.mlp.blocks[0].linear, model.mlp.output
  hand = float(model.bias[...]) ** 2 + sum(
    float(np.sum(np.asarray(p[...], np.float64) ** 2))
    for p in (block.kernel, block.bias, out.kernel, out.bias)
  )
  np.testing.assert_allclose(float(losses.net_l2(0.1, params)), 0.05 * hand, rtol=1e-5)
  grads = jax.grad(lambda p: losses.net_l2(0.1, p))(params)
  kernel_grad = np.asarray(grads["mlp"]["blocks"][0]["linear"]["kernel"][...])
  np.testing.assert_allclose(kernel_grad, 0.1 * np.asarray(block.kernel[...]), rtol=1e-5)
  assert not np.any(np.asarray(grads["embedding"]["tables"][0]["embedding"][...]))


def test_net_l2_step_shrinks_the_mlp_by_its_sgd_step():
  lr, weight = 0.5, 0.2
  _, mesh, state, step = _setup(MIN_ROWS, net_l2=weight, lr=lr)
  _, _, plain_state, plain_step = _setup(MIN_ROWS, lr=lr)
  kernel = np.asarray(state.params["mlp"]["output"]["kernel"][...])
  batch = meshes.shard_batch(_batch(3), mesh)
  state, _ = step(state, batch)
  plain_state, _ = plain_step(plain_state, batch)
  got = np.asarray(state.params["mlp"]["output"]["kernel"][...])
  want = np.asarray(plain_state.params["mlp"]["output"]["kernel"][...]) - lr * weight * kernel
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("min_rows", [0, MIN_ROWS])
def test_zero_weights_compile_the_step_without_them(min_rows):
  _, mesh, state, without = _setup(min_rows)
  zero = _setup(min_rows, embedding_l2=0.0, net_l2=0.0)[3]
  batch = meshes.shard_batch(_batch(4), mesh)
  text = without.lower(state, batch).as_text()
  assert zero.lower(state, batch).as_text() == text
  for weights in ({"embedding_l2": 1e-3}, {"net_l2": 1e-3}):
    assert _setup(min_rows, **weights)[3].lower(state, batch).as_text() != text


def test_train_config_reads_and_checks_the_keys():
  config = default.get_config()
  config.train.embedding_l2, config.train.net_l2 = 1e-4, 1e-6
  cfg = loop.TrainConfig.from_config(config)
  assert (cfg.embedding_l2, cfg.net_l2) == (1e-4, 1e-6)
  assert loop.TrainConfig.from_config(default.get_config()).embedding_l2 == 0.0
  with pytest.raises(ConfigError, match="train.embedding_l2=-1"):
    loop.TrainConfig(embedding_l2=-1.0)
