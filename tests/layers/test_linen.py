"""The linen `CodebookEmbed`: a linen CTR model trains with Optax over a `CompressedTable`, its
codes never change, and its rows are the table's rows (numpy `CompressedTable.lookup`)."""

from __future__ import annotations

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

from mec_jax.compression.table import CompressedTable
from mec_jax.layers import CodebookEmbed as NnxCodebookEmbed
from mec_jax.layers import linen


def _table(vocab=300, m=4, k=16, s=3, seed=0) -> CompressedTable:
  rng = np.random.default_rng(seed)
  return CompressedTable(
    codes=rng.integers(0, k, (vocab, m)),
    codebooks=rng.normal(size=(m, k, s)),
    first_order=0.1 * rng.normal(size=(m, k)),
    name="item",
  )


class TinyCtr(nn.Module):
  """FM-style linen model over one compressed field (items) and one full field (users)."""

  table: CompressedTable
  num_users: int = 20

  @nn.compact
  def __call__(self, ids):  # ids [B, 2] -> logits [B]
    items = linen.CodebookEmbed.from_table(self.table, name="items")
    users = nn.Embed(self.num_users, self.table.dim, name="users")
    item_rows, user_rows = items(ids[:, 0]), users(ids[:, 1])
    interaction = (item_rows * user_rows).sum(-1)
    deep = nn.Dense(1)(nn.relu(nn.Dense(16)(jnp.concatenate([item_rows, user_rows], -1))))[:, 0]
    return interaction + deep + items.first_order(ids[:, 0])


def test_rows_and_first_order_equal_the_table_and_the_nnx_layer():
  table = _table()
  module = linen.CodebookEmbed.from_table(table)
  ids = np.array([[0, 5, 299], [300, -1, 17]])  # 300 and -1 are out of range: the OOV row
  variables = module.init(jax.random.key(0), ids)
  assert set(variables) == {"params", "codes"}  # codes are not params
  np.testing.assert_array_equal(variables["codes"]["codes"], table.codes)
  apply = jax.jit(module.apply)
  np.testing.assert_allclose(apply(variables, ids), table.lookup(ids), rtol=1e-6)
  weights = table.first_order_weights()[np.where((ids < 0) | (ids >= 300), 299, ids)]
  first_order = jax.jit(lambda v, i: module.apply(v, i, method="first_order"))
  np.testing.assert_allclose(first_order(variables, ids), weights, rtol=1e-5, atol=1e-7)
  layer = NnxCodebookEmbed.from_table(table, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(apply(variables, ids), layer(jnp.asarray(ids)), rtol=1e-6)
  np.testing.assert_allclose(
    first_order(variables, ids), layer.first_order(jnp.asarray(ids)), rtol=1e-5, atol=1e-7
  )


def test_linen_ctr_model_trains_with_optax_and_its_codes_never_change():
  table = _table()
  model = TinyCtr(table)
  rng = np.random.default_rng(1)
  ids = np.stack([rng.integers(0, 300, 512), rng.integers(0, 20, 512)], axis=1)
  labels = (rng.random(512) < 0.3).astype(np.float32)
  variables = model.init(jax.random.key(0), ids)
  params, codes = variables["params"], variables["codes"]
  assert set(params["items"]) == {"codebooks", "first_order"}  # no codes among the params
  optimizer = optax.adam(1e-2)
  opt_state = optimizer.init(params)  # params only: the codes are never in the optimizer

  def loss_fn(params):
    logits = model.apply({"params": params, "codes": codes}, ids)
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for _ in range(30):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < losses[0] - 0.05, losses
  np.testing.assert_array_equal(codes["items"]["codes"], table.codes)  # frozen
  assert codes["items"]["codes"].dtype == table.codes.dtype
  trained = params["items"]["codebooks"]
  assert not np.allclose(trained, table.codebooks)  # the codebooks did train

  # The trained rows are the table's codes over the trained codebooks, row for row.
  finetuned = linen.to_table({"params": params["items"], "codes": codes["items"]}, name="item")
  np.testing.assert_array_equal(finetuned.codes, table.codes)
  item_ids = np.arange(300)
  rows = linen.CodebookEmbed.from_table(table).apply(
    {"params": params["items"], "codes": codes["items"]}, item_ids
  )
  np.testing.assert_allclose(rows, finetuned.lookup(item_ids), rtol=1e-6)


def test_no_random_codes_and_no_apply_without_them():
  table = _table(vocab=10, m=2, k=4, s=2)
  module = linen.CodebookEmbed.from_table(table)
  variables = module.init(jax.random.key(0), jnp.arange(3))
  with pytest.raises(flax.errors.ScopeCollectionNotFound, match='collection "codes"'):
    module.apply({"params": variables["params"]}, jnp.arange(3))
  bare = linen.CodebookEmbed(vocab_size=10, num_subspaces=2, codebook_size=4, subspace_dim=2)
  with pytest.raises(ValueError, match="codes_init is required"):
    bare.init(jax.random.key(0), jnp.arange(3))
  wrong = linen.CodebookEmbed.from_table(table).clone(vocab_size=11)
  with pytest.raises(ValueError, match=r"codes shape \(10, 2\), expected \(11, 2\)"):
    wrong.init(jax.random.key(0), jnp.arange(3))
  plain = linen.CodebookEmbed.from_table(table, use_first_order=False)
  variables = plain.init(jax.random.key(0), jnp.arange(3))
  assert set(variables["params"]) == {"codebooks"}
  np.testing.assert_array_equal(plain.apply(variables, jnp.arange(3), method="first_order"), 0.0)
