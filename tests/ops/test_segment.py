"""ops.segment against numpy sums and against autodiff of the plain gather."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mec_jax.ops import segment


def numpy_segment_sum(data, ids, num_segments):
  out = np.zeros((num_segments, *data.shape[1:]), np.float64)
  for i, row in zip(ids, data, strict=True):
    if 0 <= i < num_segments:
      out[i] += row
  return out


def zipf_ids(rng, vocab, size):
  return np.minimum(np.floor(vocab ** rng.random(size)) - 1, vocab - 1).astype(np.int32)


@pytest.mark.parametrize("method", segment.METHODS)
@pytest.mark.parametrize("trailing", [(), (3,), (2, 4)])
def test_segment_sum_matches_numpy(method, trailing):
  rng = np.random.default_rng(0)
  ids = zipf_ids(rng, 12, 300)
  ids[::17] = -3  # dropped
  ids[5::23] = 12  # one past the end: dropped
  data = rng.normal(size=(300, *trailing)).astype(np.float32)
  fn = jax.jit(lambda d, i: segment.segment_sum(d, i, 12, method=method))
  got = fn(data, ids)
  np.testing.assert_allclose(got, numpy_segment_sum(data, ids, 12), rtol=1e-5, atol=1e-5)
  fn(data + 1, ids[::-1].copy())
  assert fn._cache_size() == 1  # new values, same shapes: no recompile


sorted_sum = jax.jit(segment.segment_sum_sorted, static_argnums=2)


def test_segment_sum_sorted_edge_cases():
  empty = sorted_sum(jnp.zeros((0, 2)), jnp.zeros((0,), jnp.int32), 4)
  np.testing.assert_array_equal(empty, np.zeros((4, 2)))
  one_id = sorted_sum(jnp.ones((50, 2)), jnp.full((50,), 3), 4)
  np.testing.assert_allclose(one_id, [[0, 0], [0, 0], [0, 0], [50, 50]])
  all_dropped = sorted_sum(jnp.ones((5,)), jnp.array([-1, 4, 9, -7, 4]), 4)
  np.testing.assert_array_equal(all_dropped, np.zeros(4))
  with pytest.raises(ValueError, match="method 'atomic'"):
    segment.segment_sum(jnp.ones(3), jnp.zeros(3, jnp.int32), 2, method="atomic")


def test_segment_sum_sorted_keeps_float32_precision_over_long_runs():
  # 10^5 rows onto a few segments: a global cumsum with boundary differences would lose digits
  # of the small segments to cancellation against the running total; the segmented scan doesn't.
  rng = np.random.default_rng(1)
  n = 100_000
  ids = np.sort(rng.integers(0, 8, n)).astype(np.int32)
  data = (rng.normal(size=n) + 1000.0 * (ids == 0)).astype(np.float32)
  got = np.asarray(sorted_sum(data, ids, 8), np.float64)
  want = numpy_segment_sum(data.astype(np.float64), ids, 8)
  np.testing.assert_allclose(got[1:], want[1:], rtol=1e-4, atol=0.05)


@pytest.mark.parametrize("method", segment.METHODS)
@pytest.mark.parametrize("table_shape", [(9,), (9, 5)])
def test_take_rows_gradient_equals_autodiff_of_gather(method, table_shape):
  rng = np.random.default_rng(2)
  table = jnp.asarray(rng.normal(size=table_shape), jnp.float32)
  ids = jnp.asarray(zipf_ids(rng, 9, 64).reshape(16, 4))  # repeated ids, batch of fields
  weights = jnp.asarray(rng.normal(size=(16, 4, *table_shape[1:])), jnp.float32)

  def loss(take):
    return lambda t: jnp.sum(weights * jnp.tanh(take(t, ids)))

  got_value = segment.take_rows(table, ids, method=method)
  np.testing.assert_array_equal(got_value, jnp.take(table, ids, axis=0))
  got = jax.jit(jax.grad(loss(lambda t, i: segment.take_rows(t, i, method=method))))(table)
  want = jax.grad(loss(lambda t, i: jnp.take(t, i, axis=0)))(table)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_take_rows_gradient_bfloat16():
  rng = np.random.default_rng(3)
  table = jnp.asarray(rng.normal(size=(6, 3)), jnp.bfloat16)
  ids = jnp.asarray(zipf_ids(rng, 6, 200))
  grad = jax.grad(lambda t: jnp.sum(segment.take_rows(t, ids, method="sorted").astype(jnp.float32)))
  got = jax.jit(grad)(table)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    got.astype(np.float32), np.bincount(ids, minlength=6)[:, None] * [1, 1, 1]
  )


def test_take_rows_out_of_range_ids_get_no_gradient():
  table = jnp.ones((4, 2))
  ids = jnp.array([0, 4, -1, 0, 3, -5])  # as jnp.take: -1 is row 3, 4 and -5 are outside

  def loss(method):
    return lambda t: jnp.nansum(segment.take_rows(t, ids, method=method))

  want = jax.grad(lambda t: jnp.nansum(jnp.take(t, ids, axis=0)))(table)
  for method in ("sorted", "scatter"):
    np.testing.assert_allclose(jax.jit(jax.grad(loss(method)))(table), want)
  np.testing.assert_allclose(want, [[2, 2], [0, 0], [0, 0], [2, 2]])


def test_sparse_block_gradient_equals_full_table_gradient():
  """The row-sparse step's gradient: rows gathered by unique id, looked up through ``inverse``."""
  rng = np.random.default_rng(4)
  vocab, batch = 50, 128
  table = jnp.asarray(rng.normal(size=(vocab, 4)), jnp.float32)
  ids = jnp.asarray(zipf_ids(rng, vocab, batch))
  weights = jnp.asarray(rng.normal(size=(batch, 4)), jnp.float32)
  uniq, inverse = segment.unique_with_inverse(ids, vocab)
  block = jnp.take(table, uniq, axis=0, mode="clip")  # padding rows (id = vocab) clip

  def block_loss(rows):
    return jnp.sum(weights * jnp.sin(segment.take_rows(rows, inverse, method="sorted")))

  block_grad = jax.jit(jax.grad(block_loss))(block)
  full_grad = jax.grad(lambda t: jnp.sum(weights * jnp.sin(jnp.take(t, ids, axis=0))))(table)
  real = np.asarray(uniq) < vocab
  np.testing.assert_allclose(block_grad[real], full_grad[np.asarray(uniq)[real]], rtol=1e-5)
  np.testing.assert_array_equal(block_grad[~real], 0.0)  # padding rows are never read
  untouched = np.setdiff1d(np.arange(vocab), np.asarray(ids))
  np.testing.assert_array_equal(full_grad[untouched], 0.0)


def test_unique_with_inverse_matches_numpy():
  rng = np.random.default_rng(5)
  ids = zipf_ids(rng, 30, 100)
  uniq, inverse = jax.jit(segment.unique_with_inverse, static_argnums=1)(ids, 999)
  want, want_inverse = np.unique(ids, return_inverse=True)
  np.testing.assert_array_equal(uniq[: want.size], want)
  np.testing.assert_array_equal(uniq[want.size :], 999)
  np.testing.assert_array_equal(inverse, want_inverse)
  np.testing.assert_array_equal(np.asarray(uniq)[np.asarray(inverse)], ids)
