"""Embed and FieldEmbedding against numpy lookups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mec_jax.layers import CodebookEmbed, Embed, FieldEmbedding
from mec_jax.layers.base import FieldEmbedder, Table


def test_embed_lookup_and_first_order():
  table = Embed(7, 3, rngs=nnx.Rngs(0), init_std=0.5)
  assert isinstance(table, Table)
  table.bias[...] = jnp.arange(7.0)
  ids = np.array([[0, 6], [3, 3]])
  emb, bias = table.as_numpy()
  np.testing.assert_allclose(table(ids), emb[ids])
  np.testing.assert_allclose(table.first_order(ids), bias[ids])
  assert table(ids).shape == (2, 2, 3)
  assert 0.2 < np.std(emb) < 1.0  # init_std is honoured


def test_embed_without_first_order_gives_zeros():
  table = Embed(4, 2, rngs=nnx.Rngs(0), first_order=False)
  assert table.bias is None
  np.testing.assert_array_equal(table.first_order(np.array([1, 2, 3])), np.zeros(3))
  assert not any("bias" in str(p) for p, _ in nnx.to_flat_state(nnx.state(table)))


@pytest.mark.parametrize("vocab, dim", [(0, 4), (3, 0)])
def test_embed_rejects_bad_sizes(vocab, dim):
  with pytest.raises(ValueError, match="must be >= 1"):
    Embed(vocab, dim, rngs=nnx.Rngs(0))


def test_field_embedding_matches_numpy():
  vocab_sizes = [5, 3, 1]  # the last one is a numeric field (one row, id 0)
  embedding = FieldEmbedding.full(vocab_sizes, 4, rngs=nnx.Rngs(1), init_std=1.0)
  assert isinstance(embedding, FieldEmbedder)
  assert (embedding.num_fields, embedding.embed_dim) == (3, 4)
  for table in embedding.tables:
    table.bias[...] = jax.random.normal(jax.random.key(2), table.bias.shape)
  rng = np.random.default_rng(0)
  ids = np.stack([rng.integers(0, v, 6) for v in vocab_sizes], axis=1).astype(np.int32)
  values = rng.normal(size=(6, 3)).astype(np.float32)
  tables = embedding.tables_as_numpy()
  expected = np.stack([tables[f][0][ids[:, f]] * values[:, f, None] for f in range(3)], axis=1)
  expected_first = np.stack([tables[f][1][ids[:, f]] * values[:, f] for f in range(3)], axis=1)
  out = jax.jit(lambda e, i, v: e(i, v))(embedding, ids, values)
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  np.testing.assert_allclose(embedding.first_order(ids, values), expected_first, rtol=1e-6)
  # Numeric field: a learned vector scaled by the value.
  np.testing.assert_allclose(out[:, 2], values[:, 2, None] * tables[2][0][0], rtol=1e-6)


def test_field_embedding_mixes_table_kinds():
  rngs = nnx.Rngs(0)
  codes = np.array([[0, 1], [1, 0], [1, 1]])
  books = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
  tables = [
    Embed(4, 6, rngs=rngs),
    CodebookEmbed(3, 2, 2, 3, rngs=rngs, codes=codes, codebooks=books),
  ]
  embedding = FieldEmbedding(tables)
  ids = np.array([[1, 2], [3, 0]], np.int32)
  out = embedding(ids, np.ones((2, 2), np.float32))
  np.testing.assert_allclose(out[0, 1], np.concatenate([books[0, 1], books[1, 1]]))
  np.testing.assert_allclose(out[1, 0], tables[0].as_numpy()[0][3])
  with pytest.raises(ValueError, match="field 1 holds a CodebookEmbed"):
    embedding.tables_as_numpy()


def test_field_embedding_errors():
  rngs = nnx.Rngs(0)
  with pytest.raises(ValueError, match="share one dim"):
    FieldEmbedding([Embed(3, 4, rngs=rngs), Embed(3, 5, rngs=rngs)])
  with pytest.raises(ValueError, match="at least one table"):
    FieldEmbedding([])
  with pytest.raises(ValueError, match="does not implement the Table"):
    FieldEmbedding([np.zeros(3)])
  embedding = FieldEmbedding.full([3, 3], 2, rngs=rngs)
  with pytest.raises(ValueError, match=r"expected \[batch, 2\]"):
    embedding(np.zeros((4, 3), np.int32), np.ones((4, 3), np.float32))
