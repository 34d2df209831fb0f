"""CodebookEmbed: numpy reference, frozen codes, trainable codebooks, use in a user's own model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mec_jax.compression.table import CompressedTable
from mec_jax.layers import CodebookEmbed


def _table(vocab=50, m=4, k=8, s=3, seed=0):
  rng = np.random.default_rng(seed)
  return CompressedTable(
    codes=rng.integers(0, k, (vocab, m)),
    codebooks=rng.normal(size=(m, k, s)),
    first_order=rng.normal(size=(m, k)),
    name="f",
  )


def test_matches_numpy_reference():
  table = _table()
  layer = CodebookEmbed.from_table(table, rngs=nnx.Rngs(0))
  ids = np.array([[0, 7, 49], [3, 3, 12]])
  got = np.asarray(jax.jit(lambda x: layer(x))(ids))
  want = np.concatenate(
    [table.codebooks[m][table.codes[ids, m].astype(int)] for m in range(4)], axis=-1
  )
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got.shape == (2, 3, 12)
  fo = np.asarray(layer.first_order(ids))
  want_fo = sum(table.first_order[m][table.codes[ids, m].astype(int)] for m in range(4))
  np.testing.assert_allclose(fo, want_fo, rtol=1e-5)
  np.testing.assert_allclose(table.reconstruct()[ids], want, rtol=1e-6)


def test_codes_use_smallest_dtype():
  layer = CodebookEmbed(10, 2, 256, 4, rngs=nnx.Rngs(0))
  assert layer.codes[...].dtype == jnp.uint8
  layer = CodebookEmbed(10, 2, 257, 4, rngs=nnx.Rngs(0))
  assert layer.codes[...].dtype == jnp.uint16


def test_out_of_range_ids_map_to_oov():
  table = _table()
  layer = CodebookEmbed.from_table(table, rngs=nnx.Rngs(0))
  oov = np.asarray(layer(jnp.array([49])))
  np.testing.assert_allclose(np.asarray(layer(jnp.array([50, 1000, -1]))), np.repeat(oov, 3, 0))


def test_train_step_changes_codebooks_not_codes():
  layer = CodebookEmbed.from_table(_table(), rngs=nnx.Rngs(0))
  codes_before = np.asarray(layer.codes[...]).copy()
  books_before = np.asarray(layer.codebooks[...]).copy()
  fo_before = np.asarray(layer.first_order_codebook[...]).copy()
  optimizer = nnx.Optimizer(layer, optax.adam(1e-1), wrt=nnx.Param)
  ids = jnp.arange(50)
  target = jnp.ones((50, 12))

  @nnx.jit
  def step(layer, optimizer):
    def loss_fn(layer):
      return jnp.mean((layer(ids) - target) ** 2) + jnp.mean(layer.first_order(ids) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(layer)
    optimizer.update(layer, grads)
    return loss

  first = step(layer, optimizer)
  for _ in range(5):
    last = step(layer, optimizer)
  assert float(last) < float(first)
  np.testing.assert_array_equal(np.asarray(layer.codes[...]), codes_before)
  assert not np.allclose(np.asarray(layer.codebooks[...]), books_before)
  assert not np.allclose(np.asarray(layer.first_order_codebook[...]), fo_before)
  # The codes are not in the optimizer state at all.
  opt_leaves = jax.tree.leaves(nnx.state(optimizer))
  assert all(leaf.dtype != jnp.uint8 for leaf in opt_leaves)


class TinyUserModel(nnx.Module):
  """What an engineer would write: their own model, our compressed table."""

  def __init__(self, table, *, rngs):
    self.items = CodebookEmbed.from_table(table, rngs=rngs, first_order=False)
    self.head = nnx.Linear(table.dim, 1, rngs=rngs)

  def __call__(self, ids):
    return self.head(self.items(ids).mean(axis=1))[:, 0]


def test_drops_into_a_user_model():
  model = TinyUserModel(_table(), rngs=nnx.Rngs(1))
  ids = jnp.array([[1, 2, 3], [4, 5, 6]])
  out = nnx.jit(lambda m, x: m(x))(model, ids)
  assert out.shape == (2,)
  assert np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(codes=np.zeros((5, 2), int)), "codes shape"),
    (dict(codes=np.full((10, 2), 9)), "codes must lie"),
    (dict(codebooks=np.zeros((2, 4, 5))), "codebooks shape"),
    (dict(oov_id=10), "oov_id"),
  ],
)
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    CodebookEmbed(10, 2, 4, 3, rngs=nnx.Rngs(0), **kwargs)
