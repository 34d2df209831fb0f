"""Hashing trick, QR and row-wise int layers against numpy references (the `Table` interface)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mec_jax.compression.rowwise import quantize_rows
from mec_jax.layers.base import Table
from mec_jax.layers.hashed import HashedTable, hash_ids
from mec_jax.layers.qr import QREmbed, QRTable
from mec_jax.layers.rowwise import RowwiseQuantEmbed


def test_hash_is_deterministic_and_in_range():
  ids = jnp.arange(100_000)
  a, b = np.asarray(hash_ids(ids, 777, seed=3)), np.asarray(hash_ids(ids, 777, seed=3))
  np.testing.assert_array_equal(a, b)
  assert a.min() >= 0 and a.max() < 777
  assert len(np.unique(a)) == 777  # every bucket used
  assert np.mean(a != np.asarray(hash_ids(ids, 777, seed=4))) > 0.99  # the seed matters
  # Spread like a random function: bucket loads near 100_000 / 777 ~ 129.
  assert np.bincount(a).max() < 200
  np.testing.assert_array_equal(np.asarray(hash_ids(ids, 777, function="mod")), ids % 777)
  with pytest.raises(ValueError, match="function='md5'"):
    hash_ids(ids, 7, function="md5")


def test_hashed_embed_matches_numpy():
  rng = np.random.default_rng(0)
  rows, fo = rng.normal(size=(13, 6)), rng.normal(size=13)
  layer = HashedTable(rows, fo, vocab_size=50, hash_seed=1).to_layer(rngs=nnx.Rngs(0))
  assert isinstance(layer, Table)
  ids = np.array([[0, 5, 49], [7, 7, 20]])
  buckets = np.asarray(hash_ids(ids, 13, seed=1))
  np.testing.assert_allclose(np.asarray(jax.jit(lambda i: layer(i))(ids)), rows[buckets], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(layer.first_order(ids)), fo[buckets], rtol=1e-6)
  oov = np.asarray(layer(jnp.array([49])))
  np.testing.assert_allclose(np.asarray(layer(jnp.array([50, -3]))), np.repeat(oov, 2, 0))
  assert HashedTable(rows, fo, 50).nbytes() == 13 * 6 * 4


@pytest.mark.parametrize("large_index", ["remainder", "quotient"])
@pytest.mark.parametrize("combine", ["mult", "sum"])
def test_qr_is_the_combination_of_its_two_lookups(combine, large_index):
  rng = np.random.default_rng(1)
  vocab, c = 23, 5
  quotient, remainder = rng.normal(size=(5, 4)), rng.normal(size=(c, 4))
  fo = rng.normal(size=5 + c)
  table = QRTable(quotient, remainder, fo, vocab, combine, large_index=large_index)
  layer = table.to_layer(rngs=nnx.Rngs(0))
  assert isinstance(layer, Table)
  ids = np.arange(vocab)
  # The paper's Algorithm 1 (large row v mod ceil(V/c)) or QREmbeddingBag's (large row v // c).
  big, small = (ids % 5, ids // 5) if large_index == "remainder" else (ids // c, ids % c)
  assert len(set(zip(big.tolist(), small.tolist(), strict=True))) == vocab  # every id distinct
  q_rows, r_rows = quotient[big], remainder[small]
  want = q_rows * r_rows if combine == "mult" else q_rows + r_rows
  np.testing.assert_allclose(np.asarray(jax.jit(lambda i: layer(i))(ids)), want, rtol=1e-6)
  np.testing.assert_allclose(table.reconstruct(), want, rtol=1e-6)
  np.testing.assert_allclose(
    np.asarray(layer.first_order(ids)), fo[big] + fo[5 + small], rtol=1e-5, atol=1e-6
  )
  assert table.nbytes() == (5 + c) * 4 * 4
  assert table.knobs()["large_index"] == large_index


def test_qr_table_read_from_an_older_file_keeps_its_layout():
  quotient, remainder = np.ones((5, 2)), np.arange(10.0).reshape(5, 2)
  table = QRTable(quotient, remainder, None, 23, "mult", large_index=None)
  np.testing.assert_allclose(table.reconstruct(), remainder[np.arange(23) % 5])
  with pytest.raises(ValueError, match="large_index='middle'"):
    QREmbed(23, quotient, remainder, large_index="middle")


def test_qr_shape_mismatch_is_a_clear_error():
  with pytest.raises(ValueError, match="vocab_size 23"):
    QREmbed(23, np.zeros((4, 2)), np.zeros((5, 2)))


@pytest.mark.parametrize("bits", [8, 4])
def test_rowwise_embed_decodes_and_trains_only_scale_and_offset(bits):
  x = np.random.default_rng(2).normal(size=(30, 8)).astype(np.float32)
  q, scale, offset = quantize_rows(x, bits, "float16")
  layer = RowwiseQuantEmbed(q, scale, offset, bits=bits, first_order=np.arange(30.0))
  assert isinstance(layer, Table)
  ids = jnp.arange(30)
  step = np.asarray(scale)[:, None]
  assert np.all(np.abs(np.asarray(layer(ids)) - x) <= step / 2 + 1e-6)
  params = nnx.state(layer, nnx.Param)
  assert {str(p[0]) for p, _ in nnx.to_flat_state(params)} == {
    "row_scale",
    "row_offset",
    "rowwise_first_order",
  }
  grads = nnx.grad(lambda m: jnp.sum(m(ids) ** 2))(layer)
  assert np.any(np.asarray(grads.row_scale[...]) != 0)  # straight through the float16 rounding
  # The forward pass uses float16 values even after a float32 update.
  layer.row_scale[...] = layer.row_scale[...] * (1 + 1e-5)
  stored = np.asarray(layer.row_scale[...]).astype(np.float16).astype(np.float32)
  want = np.asarray(offset)[:, None].astype(np.float16).astype(np.float32) + stored[:, None] * q
  np.testing.assert_allclose(np.asarray(layer(ids)), want, rtol=1e-6, atol=1e-6)
