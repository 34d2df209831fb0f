"""CCE and ROBE-Z layers against numpy references: lookups, bytes, gradients without atomics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mec_jax.layers.base import Table
from mec_jax.layers.cce import CCETable
from mec_jax.layers.hashed import hash_ids
from mec_jax.layers.robez import RobeTable
from mec_jax.ops.lowering import contended_scatter_adds

V, C, K, S = 50, 3, 7, 2  # CCE: ids, columns, clusters, sub-dim


def _cce(rng, first_order=True):
  return CCETable(
    rng.normal(size=(C, K, S)).astype(np.float32),
    rng.normal(size=(C, K, S)).astype(np.float32),
    rng.integers(0, K, (V, C)).astype(np.uint8),
    rng.normal(size=(C, K)).astype(np.float32) if first_order else None,
    hash_seed=5,
  )


def _robe(rng, size=23, dim=6, blocks=3):
  return RobeTable(
    rng.normal(size=size).astype(np.float32),
    rng.normal(size=max(1, size // dim)).astype(np.float32),
    V,
    dim,
    blocks,
    2,
  )


def cce_reference(table, ids):
  """concat_j clustered[j, a[v, j]] + hashed[j, hash(v, seed + j)], written per id in numpy."""
  ids = np.where((ids < 0) | (ids >= V), V - 1, ids).reshape(-1)
  out = np.zeros((ids.size, C * S))
  for n, v in enumerate(ids):
    for j in range(C):
      h = int(hash_ids(np.array([v]), K, table.hash_seed + j)[0])
      out[n, j * S : (j + 1) * S] = table.clustered[j, table.assignments[v, j]] + table.hashed[j, h]
  return out


def robe_reference(table, ids):
  """Block j of id v: array[(hash(v, seed + j) + t) mod B] for t < d / Z, per id in numpy."""
  ids = np.where((ids < 0) | (ids >= V), V - 1, ids).reshape(-1)
  size, block = table.array.size, table.dim // table.num_blocks
  out = np.zeros((ids.size, table.dim))
  for n, v in enumerate(ids):
    for j in range(table.num_blocks):
      start = int(hash_ids(np.array([v]), size, table.hash_seed + j)[0])
      for t in range(block):
        out[n, j * block + t] = table.array[(start + t) % size]
  return out


def test_cce_lookup_matches_numpy():
  table = _cce(np.random.default_rng(0))
  layer = table.to_layer(rngs=nnx.Rngs(0))
  assert isinstance(layer, Table) and table.dim == C * S
  ids = np.array([[0, 5, 49], [7, 7, 20]])
  got = np.asarray(jax.jit(lambda i: layer(i))(jnp.asarray(ids)))
  np.testing.assert_allclose(got.reshape(-1, C * S), cce_reference(table, ids), rtol=1e-6)
  want_fo = [sum(table.first_order[j, table.assignments[v, j]] for j in range(C)) for v in ids.flat]
  np.testing.assert_allclose(np.asarray(layer.first_order(ids)).reshape(-1), want_fo, rtol=1e-6)
  np.testing.assert_allclose(
    np.asarray(layer(np.array([50, -3]))), cce_reference(table, np.array([49, 49])), rtol=1e-6
  )


def test_robez_lookup_matches_numpy():
  table = _robe(np.random.default_rng(1))
  layer = table.to_layer(rngs=nnx.Rngs(0))
  assert isinstance(layer, Table)
  ids = np.array([[0, 5, 49], [7, 7, 20]])
  got = np.asarray(jax.jit(lambda i: layer(i))(jnp.asarray(ids)))
  assert got.shape == (2, 3, 6)
  np.testing.assert_allclose(got.reshape(-1, 6), robe_reference(table, ids), rtol=1e-6)
  slots = np.asarray(hash_ids(ids, table.first_order.size, table.hash_seed + table.num_blocks))
  np.testing.assert_allclose(
    np.asarray(layer.first_order(ids)), table.first_order[slots], rtol=1e-6
  )
  np.testing.assert_allclose(
    np.asarray(layer(np.array([77]))), robe_reference(table, np.array([49])), rtol=1e-6
  )
  # Blocks wrap around the end of the array: some position reads entry 0 after entry B - 1.
  pos = table.positions()
  assert pos.min() >= 0 and pos.max() < 23 and np.any((pos[:, :-1] == 22) & (pos[:, 1:] == 0))


def test_bytes_are_what_the_arrays_take():
  cce = _cce(np.random.default_rng(2))
  tables = cce.clustered.nbytes + cce.hashed.nbytes
  assert cce.nbytes(packed=False) == tables + cce.assignments.nbytes == 2 * C * K * S * 4 + V * C
  assert cce.nbytes(packed=True) == tables + int(np.ceil(V * C * 3 / 8))  # K=7: 3 bits
  assert cce.first_order_nbytes() == cce.first_order.nbytes
  robe = _robe(np.random.default_rng(3))
  assert robe.nbytes(True) == robe.nbytes(False) == robe.array.nbytes == 23 * 4
  assert robe.first_order_nbytes() == robe.first_order.nbytes


def test_gradients_have_no_contended_scatter_adds():
  ids = jnp.asarray(np.arange(64) % 5, jnp.int32)
  rng = np.random.default_rng(4)
  for table in (_cce(rng), _robe(rng)):
    graphdef, params, rest = nnx.split(table.to_layer(rngs=nnx.Rngs(0)), nnx.Param, ...)

    def loss(p, graphdef=graphdef, rest=rest):
      model = nnx.merge(graphdef, p, rest)
      return jnp.sum(model(ids) ** 2) + jnp.sum(model.first_order(ids))

    text = jax.jit(jax.grad(loss)).trace(params).lower(lowering_platforms=("cuda",)).as_text()
    assert contended_scatter_adds(text) == 0, table.method


def test_bad_shapes_are_clear_errors():
  rng = np.random.default_rng(5)
  t = _cce(rng)
  with pytest.raises(ValueError, match="assignments must lie in"):
    CCETable(t.clustered, t.hashed, t.assignments + K, None).to_layer(rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="num_blocks=4 must be >= 1 and divide dim=6"):
    _robe(rng, blocks=4).to_layer(rngs=nnx.Rngs(0))


def _baseline_tables(rng):
  """One small artifact of each `TableArtifact` (hash, QR, CCE, ROBE-Z, int8)."""
  from mec_jax.compression.rowwise import quantize_rows
  from mec_jax.layers.hashed import HashedTable
  from mec_jax.layers.qr import QRTable
  from mec_jax.layers.rowwise import RowwiseTable

  full = rng.normal(size=(V, 6)).astype(np.float32)
  values, scale, offset = (np.asarray(a) for a in quantize_rows(full, 8, "float16"))
  return [
    HashedTable(full[:9], rng.normal(size=9).astype(np.float32), V, hash_seed=3),
    QRTable(full[:10], full[10:15], rng.normal(size=15).astype(np.float32), V),
    _cce(rng),
    _robe(rng),
    RowwiseTable(values, scale, offset, rng.normal(size=V).astype(np.float32)),
  ]


def test_table_artifacts_share_one_shape():
  """`layers.base.TableArtifact`: each artifact's layer gets its fields by name, drops its
  first-order weights on request, and `knobs` reports exactly its `knob_names`."""
  rng = np.random.default_rng(3)
  ids = np.array([0, 7, V - 1, V + 4])
  for table in _baseline_tables(rng):
    layer = table.to_layer(rngs=nnx.Rngs(0))
    assert type(layer) is table.layer_type and isinstance(layer, Table)
    assert (layer.vocab_size, layer.dim) == (table.vocab_size, table.dim)
    assert np.abs(np.asarray(layer.first_order(ids))).sum() > 0
    bare = table.to_layer(rngs=nnx.Rngs(0), first_order=False)
    np.testing.assert_array_equal(np.asarray(bare.first_order(ids)), np.zeros(4))
    np.testing.assert_array_equal(np.asarray(bare(ids)), np.asarray(layer(ids)))
    assert list(table.knobs()) == list(table.knob_names) and table.knob_names
    with pytest.raises(ValueError, match=f"{type(layer).__name__}: first_order shape"):
      type(table)(**{**vars(table), "first_order": np.zeros(1, np.float32)}).to_layer(
        rngs=nnx.Rngs(0)
      )
