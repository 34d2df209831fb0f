"""Row-sparse tables: equal to dense SGD, row-wise optimizers vs numpy, frozen/lr scale, resume."""

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
from mec_jax.train import loop, row_optimizers, sparse, steps
from mec_jax.train import optimizer as optim

VOCABS = [30, 20, 3]  # fields 0 and 1 are sparse at MIN_ROWS
MIN_ROWS = 15


def _model():
  return toy_sparse.model(VOCABS)


def _batch(seed, rows=64, high=(10, 6, 3)):
  """Ids from a few rows only (many repeats; most rows untouched)."""
  rng = np.random.default_rng(seed)
  ids = np.stack([rng.integers(0, h, rows) for h in high], axis=1).astype(np.int32)
  label = ((ids[:, 0] % 2) ^ (ids[:, 1] % 3 == 0)).astype(np.float32)
  return {"ids": ids, "values": np.ones(ids.shape, np.float32), "label": label}


def _setup(tx, optimizer="sgd", *, min_rows=MIN_ROWS, rate=0.1, clip=0.0):
  model = _model()
  mesh = meshes.data_mesh(jax.devices()[:1])
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  rate_of = rate if callable(rate) else (lambda path: rate)
  fields = sparse.find_sparse_fields(model, min_rows=min_rows, rate_of_path=rate_of)
  state, shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer=optimizer
  )
  step = steps.make_train_step(
    graphdef,
    rng_state,
    tx,
    mesh,
    dropout_key=jax.random.key(0),
    sparse_fields=fields,
    sparse_optimizer=optimizer,
    grad_clip_norm=clip,
    state_sharding=shardings,
  )
  return (graphdef, rng_state, fields), mesh, state, step


def _sgd(lr, clip):
  return optax.chain(
    optax.clip_by_global_norm(clip), optax.sgd(lr), optax.inject_hyperparams(optax.scale)(1.0)
  )


def _full_tables(state, fields):
  params = sparse.merge_tables(state.params, sparse.tables_of(state.sparse), fields)
  return jax.device_get(params)


def test_sparse_sgd_equals_dense_sgd_and_leaves_other_rows_untouched():
  lr, clip = 0.5, 0.05  # the clip is active: the global norm covers the touched rows too
  _, mesh, dense_state, dense_step = _setup(_sgd(lr, clip), min_rows=0)
  (_, _, fields), _, sparse_state, sparse_step = _setup(_sgd(lr, clip), rate=lr, clip=clip)
  assert [f.field for f in fields] == [0, 1]
  optax_paths = {path for path, _ in nnx.to_flat_state(sparse_state.params)}
  assert ("embedding", "tables", 0, "embedding") not in optax_paths
  assert ("embedding", "tables", 2, "embedding") in optax_paths  # small tables stay in Optax
  before = _full_tables(sparse_state, fields)
  batches = [_batch(0), _batch(1)]
  for batch in batches:
    dense_state, _ = dense_step(dense_state, meshes.shard_batch(batch, mesh))
    sparse_state, _ = sparse_step(sparse_state, meshes.shard_batch(batch, mesh))
  dense, after = jax.device_get(dense_state.params), _full_tables(sparse_state, fields)
  for f in (0, 1):
    touched = np.unique(np.concatenate([b["ids"][:, f] for b in batches]))
    untouched = np.setdiff1d(np.arange(VOCABS[f]), touched)
    for key in ("embedding", "bias"):
      got = after["embedding"]["tables"][f][key][...]
      want = dense["embedding"]["tables"][f][key][...]
      start = before["embedding"]["tables"][f][key][...]
      np.testing.assert_allclose(got[touched], want[touched], rtol=1e-5, atol=1e-7)
      assert not np.allclose(got[touched], start[touched])
      np.testing.assert_array_equal(got[untouched], start[untouched])
  assert jax.tree.structure(after) == jax.tree.structure(dense)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), after, dense)


@jax.jit
def _loss(graphdef, params, rng_state, other, batch):
  model = nnx.merge(graphdef, params, rng_state, other, copy=True)
  return steps.bce_with_logits(model(batch["ids"], batch["values"]), batch["label"])


_table_grads = jax.jit(jax.grad(_loss, argnums=1), static_argnums=0)


def _numpy_step(optimizer, tables, state, grads, touched, lr):
  """Reference: the optimizer on the full numpy table, row by row over ``touched``."""
  for row in touched:
    if optimizer == "lazy_adam":
      state["count"][row] += 1
      c = state["count"][row]
    for key in tables:
      g = grads[key][row]
      if optimizer == "rowwise_adagrad":
        state[key + "_acc"][row] += np.mean(np.square(g))
        tables[key][row] -= lr * g / (np.sqrt(state[key + "_acc"][row]) + 1e-8)
      else:
        mu = state[key + "_mu"][row] = 0.9 * state[key + "_mu"][row] + 0.1 * g
        nu = state[key + "_nu"][row] = 0.999 * state[key + "_nu"][row] + 0.001 * g * g
        mu_hat, nu_hat = mu / (1 - 0.9**c), nu / (1 - 0.999**c)
        tables[key][row] -= lr * mu_hat / (np.sqrt(nu_hat) + 1e-8)


@pytest.mark.parametrize("optimizer", ["rowwise_adagrad", "lazy_adam"])
def test_row_optimizers_match_numpy_over_three_steps(optimizer):
  lr = 0.05
  (graphdef, rng_state, fields), mesh, state, step = _setup(
    optim.make_optimizer(1e-2), optimizer, rate=lr
  )
  field = fields[0]
  ref_tables = {k: np.array(v, np.float64) for k, v in state.sparse[field.name]["tables"].items()}
  ref_state = {k: np.array(v) for k, v in state.sparse[field.name]["opt"].items()}
  ref_state = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in ref_state.items()}
  for seed in range(3):
    batch = _batch(seed)
    assert len(np.unique(batch["ids"][:, 0])) < len(batch["ids"])  # repeated ids
    full = sparse.merge_tables(state.params, sparse.tables_of(state.sparse), fields)
    grads = _table_grads(graphdef, full, rng_state, state.other, batch)
    table_grads = {
      k: np.asarray(grads["embedding"]["tables"][0][k][...], np.float64) for k in ref_tables
    }
    _numpy_step(optimizer, ref_tables, ref_state, table_grads, np.unique(batch["ids"][:, 0]), lr)
    state, _ = step(state, meshes.shard_batch(batch, mesh))
  got = jax.device_get(state.sparse[field.name])
  # Adam's step is ~lr whatever the gradient, so float32 noise in tiny gradients shows up at
  # ~1e-4 of a step; a wrong count or bias correction would be off by ~lr.
  atol = 5e-6 if optimizer == "lazy_adam" else 1e-7
  for key, want in ref_tables.items():
    np.testing.assert_allclose(got["tables"][key], want, rtol=2e-5, atol=atol)
  for key, want in ref_state.items():
    np.testing.assert_allclose(got["opt"][key], want, rtol=2e-5, atol=1e-9)
  if optimizer == "rowwise_adagrad":  # one float per row, no Adam moments
    assert {k: v.shape for k, v in got["opt"].items()} == {
      "embedding_acc": (VOCABS[0],),
      "bias_acc": (VOCABS[0],),
    }


def test_frozen_tables_and_lr_scale():
  def rate(path):  # field 0 frozen (stage C's warm-start default), field 1 trained
    return 0.0 if "tables/0/" in path else 0.1

  (_, _, fields), mesh, state, step = _setup(optim.make_optimizer(1e-2), "lazy_adam", rate=rate)
  assert [f.frozen for f in fields] == [True, False]
  assert state.sparse["field_0"]["opt"] == {}
  start = jax.device_get(state.sparse)
  batch = meshes.shard_batch(_batch(0), mesh)
  state = state.replace(opt_state=optim.set_lr_scale(state.opt_state, 0.0))
  state, _ = step(state, batch)  # plateau scale 0: nothing moves
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.sparse["field_1"]["tables"]),
               start["field_1"]["tables"])  # fmt: skip
  state = state.replace(opt_state=optim.set_lr_scale(state.opt_state, 1.0))
  state, _ = step(state, batch)
  after = jax.device_get(state.sparse)
  np.testing.assert_array_equal(after["field_0"]["tables"]["embedding"],
                                start["field_0"]["tables"]["embedding"])  # fmt: skip
  assert not np.allclose(after["field_1"]["tables"]["embedding"],
                         start["field_1"]["tables"]["embedding"])  # fmt: skip
  assert int(after["field_1"]["opt"]["count"].max()) == 2  # both steps counted (scale 0 too)


def test_row_update_drops_padding_ids():
  arrays = {"embedding": jnp.ones((4, 2)), "bias": jnp.zeros(4)}
  state = row_optimizers.init_row_state("sgd", arrays)
  uniq = jnp.array([1, 4, 4])  # 4 = the padding id of a 4-row table
  grads = {"embedding": jnp.ones((3, 2)), "bias": jnp.ones(3)}
  out, _ = row_optimizers.update_rows("sgd", arrays, state, uniq, grads, 0.5)
  np.testing.assert_array_equal(out["embedding"][:, 0], [1, 0.5, 1, 1])
  np.testing.assert_array_equal(out["bias"], [0, -0.5, 0, 0])


def test_padding_mismatch_accepts_only_other_padding():
  field = sparse.SparseField("field_0", 0, 30, {}, 0.1)
  live = {"tables": {"embedding": jnp.zeros((30, 4))}, "opt": {"embedding_acc": jnp.zeros(30)}}
  target = {"field_0": live}
  padded_for_8 = {"field_0": {"tables": {"embedding": (32, 4)}, "opt": {"embedding_acc": (32,)}}}
  as_arrays = jax.tree.map(lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32), padded_for_8,
                           is_leaf=lambda x: isinstance(x, tuple))  # fmt: skip
  assert sparse.padding_mismatch(as_arrays, target, [field], saved_shards=8) is None
  message = sparse.padding_mismatch(as_arrays, target, [field], saved_shards=2)
  assert message.startswith("field_0/tables/embedding: saved shape (32, 4), expected (30, 4)")
  as_arrays["field_0"]["opt"] = {}
  assert "arrays [] saved" in sparse.padding_mismatch(as_arrays, target, [field], 8)


def test_config_rejects_unknown_sparse_optimizer():
  with pytest.raises(ConfigError, match="train.sparse_optimizer='adam'"):
    loop.TrainConfig(sparse_optimizer="adam")
  with pytest.raises(ConfigError, match="train.sparse_min_rows=-1"):
    loop.TrainConfig(sparse_min_rows=-1)


def test_train_mesh_checks_the_model_axis_size():
  one = jax.devices()[:1]
  mesh = steps.train_mesh(1, one)
  assert mesh.axis_names == ("data",) and sparse.row_axes(mesh) == ("data",)
  with pytest.raises(ConfigError, match=r"train.model_axis_size=2 .*device count \(1\)"):
    steps.train_mesh(2, one)
  with pytest.raises(ConfigError, match=r"train.model_axis_size=0; expected >= 1"):
    loop.TrainConfig(model_axis_size=0)
  assert loop.TrainConfig.from_config(default.get_config()).model_axis_size == 1


def test_model_axis_needs_a_single_process(monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(
    ConfigError, match=r"train.model_axis_size=2 needs a single process \(got 2\)"
  ):
    steps.train_mesh(2, jax.devices()[:1] * 2)
  assert steps.train_mesh(1, jax.devices()[:1]).axis_names == ("data",)  # 1-D is fine


def _splits():
  return toy_sparse.splits(VOCABS)


class Kill(Exception):
  pass


def test_killed_sparse_run_resumes_to_the_uninterrupted_result(tmp_path):
  config = loop.TrainConfig(
    batch_size=64, eval_batch_size=256, epochs=2, learning_rate=1e-2, checkpoint_every_steps=4,
    log_every_steps=4, progress=False, sparse_min_rows=MIN_ROWS,
    sparse_optimizer="rowwise_adagrad", sparse_learning_rate=0.05,
  )  # fmt: skip
  splits = _splits()
  whole = _model()
  expected = loop.fit(whole, splits, train_config=config, workdir=str(tmp_path / "a"))

  def kill(step):
    if step == 14:  # epoch 2, last checkpoint at step 12
      raise Kill()

  with pytest.raises(Kill):
    loop.fit(_model(), splits, train_config=config, workdir=str(tmp_path / "b"), on_step=kill)
  resumed = _model()
  result = loop.fit(resumed, splits, train_config=config, workdir=str(tmp_path / "b"))
  assert result.steps == expected.steps == 20
  np.testing.assert_allclose(result.test["auc"], expected.test["auc"], rtol=1e-6)
  for f in (0, 1):
    np.testing.assert_allclose(
      resumed.embedding.tables[f].embedding[...], whole.embedding.tables[f].embedding[...],
      rtol=1e-5, atol=1e-7,
    )  # fmt: skip
  assert result.valid["auc"] > 0.6


def test_big_tables_initialize_in_chunks(monkeypatch):
  from mec_jax.layers import embed

  monkeypatch.setattr(embed, "CHUNKED_INIT_ROWS", 100)
  monkeypatch.setattr(embed, "INIT_CHUNK_ROWS", 64)
  rows = np.asarray(embed.Embed(300, 8, rngs=nnx.Rngs(0), init_std=0.5).embedding[...])
  again = np.asarray(embed.Embed(300, 8, rngs=nnx.Rngs(0), init_std=0.5).embedding[...])
  np.testing.assert_array_equal(rows, again)  # deterministic in the key
  assert rows.shape == (300, 8) and abs(rows.std() - 0.5) < 0.05 and abs(rows.mean()) < 0.05
  assert not np.allclose(rows[:64], rows[64:128])  # chunks draw different numbers
  assert np.all(rows[-1] != 0)  # the short last chunk is filled
