"""The id policy of `mec_jax.layers.base`: bad ids raise at the data boundary, and inside a table
every out-of-range id (negative, too large, too wide for int32) reads the OOV row, in every table
(`Embed`, `CodebookEmbed`, `HashedEmbed`, `QREmbed`, `RowwiseQuantEmbed`), eager or under jit;
non-integer ids are refused. The export's half is in ``tests/export/test_export.py``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mec_jax.compression.table import CompressedTable
from mec_jax.errors import DataError
from mec_jax.ids import host_ids
from mec_jax.layers import CodebookEmbed
from mec_jax.layers.base import check_ids, lookup_ids
from mec_jax.layers.embed import Embed
from mec_jax.layers.field_embedding import FieldEmbedding
from mec_jax.layers.hashed import HashedTable
from mec_jax.layers.qr import QRTable
from mec_jax.layers.rowwise import RowwiseTable
from mec_jax.train.evaluation import check_split

VOCAB = 12
BAD = [-1, VOCAB, 1000, 2**31 - 1, -(2**31)]  # all fit int32
WIDE = [2**32, 2**32 + 5, -(2**32) + 3]  # int64 ids that would wrap onto rows 0, 5, 3


def _tables():
  rng = np.random.default_rng(0)
  embed = Embed(VOCAB, 4, rngs=nnx.Rngs(0))
  compressed = CompressedTable(
    codes=rng.integers(0, 4, (VOCAB, 2)), codebooks=rng.normal(size=(2, 4, 2))
  )
  return embed, CodebookEmbed.from_table(compressed, rngs=nnx.Rngs(0))


INT32_MAX = 2**31 - 1
MATRIX_INT32 = [-1, VOCAB, INT32_MAX, -(2**31), 0, 5, VOCAB - 1]  # representable as int32
MATRIX_WIDE = [2**31, 2**32, 2**32 + 1, 2**40 + 7, -(2**32) + 3]  # int64 only; int32 wraps


def _rule(ids) -> list[int]:
  """The documented rule, in plain Python ints: out of [0, V) -> the OOV id V - 1."""
  return [v if 0 <= v < VOCAB else VOCAB - 1 for v in ids]


def _all_tables():
  """``{name: (layer, dense [V, d] numpy reference, first-order [V] numpy reference)}``."""
  rng = np.random.default_rng(0)
  embed = Embed(VOCAB, 4, rngs=nnx.Rngs(0))
  embed.bias[...] = rng.normal(size=VOCAB).astype(np.float32)
  compressed = CompressedTable(
    codes=rng.integers(0, 4, (VOCAB, 2)),
    codebooks=rng.normal(size=(2, 4, 2)),
    first_order=rng.normal(size=(2, 4)),
  )
  hashed = HashedTable(rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=5), VOCAB)
  qr = QRTable(rng.normal(size=(3, 4)), rng.normal(size=(4, 4)), rng.normal(size=7), VOCAB)
  rowwise = RowwiseTable(
    values=rng.integers(0, 256, (VOCAB, 4)).astype(np.uint8),
    scale=rng.uniform(0.01, 0.1, VOCAB).astype(np.float16).astype(np.float32),
    offset=rng.normal(size=VOCAB).astype(np.float16).astype(np.float32),
    first_order=rng.normal(size=VOCAB).astype(np.float32),
  )
  ids = np.arange(VOCAB)
  q, r = ids // 4, ids % 4
  return {
    "Embed": (embed, *embed.as_numpy()),
    "CodebookEmbed": (
      CodebookEmbed.from_table(compressed, rngs=nnx.Rngs(0)),
      compressed.reconstruct(),
      compressed.first_order_weights(),
    ),
    "HashedEmbed": (
      hashed.to_layer(rngs=nnx.Rngs(0)),
      hashed.rows[hashed.buckets()],
      hashed.first_order[hashed.buckets()],
    ),
    "QREmbed": (
      qr.to_layer(rngs=nnx.Rngs(0)),
      qr.reconstruct(),
      qr.first_order[q] + qr.first_order[3 + r],
    ),
    "RowwiseQuantEmbed": (
      rowwise.to_layer(rngs=nnx.Rngs(0)),
      rowwise.reconstruct(),
      rowwise.first_order,
    ),
  }


TABLES = ["Embed", "CodebookEmbed", "HashedEmbed", "QREmbed", "RowwiseQuantEmbed"]


@pytest.fixture(scope="module")
def tables():
  return _all_tables()


def _check(layer, dense, first, ids, rows, weights, how):
  expected = _rule([int(v) for v in np.asarray(ids).ravel()])
  np.testing.assert_allclose(np.asarray(rows), dense[expected], rtol=1e-5, atol=1e-6, err_msg=how)
  np.testing.assert_allclose(
    np.asarray(weights), first[expected], rtol=1e-5, atol=1e-6, err_msg=how
  )


@pytest.mark.parametrize("name", TABLES)
def test_every_table_follows_the_rule_eager_and_under_jit(tables, name):
  layer, dense, first = tables[name]
  # Host int64 ids of every width, eager: mapped in int64 before the cast.
  wide = np.array(MATRIX_INT32 + MATRIX_WIDE, np.int64)
  _check(layer, dense, first, wide, layer(wide), layer.first_order(wide), "eager numpy int64")
  # JAX int32 ids (all a traced id can hold without x64), eager and under jit.
  narrow = jnp.asarray(MATRIX_INT32, jnp.int32)
  _check(layer, dense, first, MATRIX_INT32, layer(narrow), layer.first_order(narrow), "eager jnp")
  rows, weights = nnx.jit(lambda t, x: (t(x), t.first_order(x)))(layer, narrow)
  _check(layer, dense, first, MATRIX_INT32, rows, weights, "jit int32")
  # Wide host ids enter jit through `host_ids` (a jit argument is cast by JAX before any table
  # sees it): the same rows as eager.
  mapped = host_ids(wide, VOCAB, VOCAB - 1)
  rows, weights = nnx.jit(lambda t, x: (t(x), t.first_order(x)))(layer, mapped)
  _check(layer, dense, first, wide, rows, weights, "jit after host_ids")
  # With x64 on, a traced int64 id is range-checked in int64 under jit.
  with jax.enable_x64(True):
    rows, weights = nnx.jit(lambda t, x: (t(x), t.first_order(x)))(layer, jnp.asarray(wide))
  _check(layer, dense, first, wide, rows, weights, "jit int64 (x64)")


@pytest.mark.parametrize("name", TABLES)
def test_every_table_refuses_non_integer_ids(tables, name):
  layer = tables[name][0]
  for ids in (jnp.asarray([1.7]), np.array([1.7]), [1.0], jnp.asarray([True])):
    with pytest.raises(DataError, match=rf"{name}: ids must have an integer dtype, got"):
      layer(ids)
    with pytest.raises(DataError, match=rf"{name}: ids must have an integer dtype"):
      layer.first_order(ids)
  with pytest.raises(DataError, match=rf"{name}: ids must have an integer dtype, got float32"):
    nnx.jit(lambda t, x: t(x))(layer, jnp.asarray([1.7, 2.0]))  # refused at trace time


def test_host_ids_maps_per_field_and_every_integer_width():
  ids = np.array([[0, 7], [-1, 2**32], [3, 9]], np.int64)
  np.testing.assert_array_equal(
    host_ids(ids, np.array([3, 8]), np.array([2, 7])), [[0, 7], [2, 7], [2, 7]]
  )
  assert host_ids(ids, np.array([3, 8]), np.array([2, 7])).dtype == np.int32
  for dtype in (np.uint8, np.int16, np.uint32, np.uint64):
    big = np.array([1, np.iinfo(dtype).max], dtype)
    np.testing.assert_array_equal(host_ids(big, VOCAB, VOCAB - 1), [1, VOCAB - 1])


def test_lookup_ids_maps_every_bad_id_to_oov():
  ids = np.array(BAD + WIDE + [0, 5, VOCAB - 1], np.int64)
  mapped = np.asarray(lookup_ids(ids, VOCAB, VOCAB - 1))
  expected = np.array([VOCAB - 1] * (len(BAD) + len(WIDE)) + [0, 5, VOCAB - 1])
  np.testing.assert_array_equal(mapped, expected)
  assert mapped.dtype == np.int32
  traced = jax.jit(lambda x: lookup_ids(x, VOCAB, 3))(jnp.asarray(BAD + [4], jnp.int32))
  np.testing.assert_array_equal(np.asarray(traced), [3] * len(BAD) + [4])


@pytest.mark.parametrize("ids", [BAD, WIDE], ids=["int32", "int64-wide"])
def test_full_and_compressed_tables_agree_on_bad_ids(ids):
  for table in _tables():
    oov = np.asarray(table(np.array([VOCAB - 1])))
    rows = np.asarray(table(np.array(ids, np.int64)))
    np.testing.assert_array_equal(rows, np.repeat(oov, len(ids), 0), err_msg=type(table).__name__)
    first = np.asarray(table.first_order(np.array(ids, np.int64)))
    np.testing.assert_array_equal(first, np.asarray(table.first_order(np.array([VOCAB - 1])))[0])
  # Under jit (int32 ids) the same holds.
  embed, codebook = _tables()
  for table in (embed, codebook):
    out = nnx.jit(lambda t, x: t(x))(table, jnp.asarray(BAD, jnp.int32))
    np.testing.assert_array_equal(
      np.asarray(out), np.repeat(np.asarray(table(np.array([VOCAB - 1]))), len(BAD), 0)
    )


def test_explicit_oov_id_is_validated_and_used():
  embed = Embed(VOCAB, 4, rngs=nnx.Rngs(0), oov_id=0)
  np.testing.assert_array_equal(np.asarray(embed(np.array([-3]))), np.asarray(embed(np.array([0]))))
  with pytest.raises(ValueError, match=r"oov_id 12 outside \[0, 12\)"):
    Embed(VOCAB, 4, rngs=nnx.Rngs(0), oov_id=VOCAB)


@pytest.mark.parametrize(
  "value, match",
  [
    (-1, r"id -1 at row 2, field 'b' is outside the table's \[0, 7\)"),
    (7, r"id 7 at row 2, field 'b' is outside the table's \[0, 7\)"),
    (2**32 + 5, r"id 4294967301 \(too wide for int32\) at row 2, field 'b'"),
  ],
)
def test_check_ids_names_split_row_field_and_value(value, match):
  ids = np.zeros((4, 2), np.int64)
  ids[2, 1] = value
  with pytest.raises(DataError, match=rf"train: {match}"):
    check_ids(ids, [5, 7], "train", names=["a", "b"])
  check_ids(np.minimum(ids, 4).clip(0), [5, 7], "train")  # in range: no error


def test_check_ids_rejects_floats_and_wrong_width():
  with pytest.raises(DataError, match=r"ids must be integers, got float32"):
    check_ids(np.zeros((2, 2), np.float32), [3, 3], "x")
  with pytest.raises(DataError, match=r"shape \(2, 3\), expected \[rows, 2\]"):
    check_ids(np.zeros((2, 3), np.int32), [3, 3], "x")


def test_fit_and_evaluate_check_splits_at_the_boundary():
  model = nnx.Module()
  model.embedding = FieldEmbedding.full([5, 7], 4, rngs=nnx.Rngs(0))
  split = {"ids": np.zeros((3, 2), np.int64), "values": np.ones((3, 2), np.float32)}
  split["label"] = np.zeros(3, np.float32)
  split["ids"][1, 0] = 2**32  # would wrap to a valid id 0 inside jit
  with pytest.raises(
    DataError, match=r"valid: id 4294967296 \(too wide for int32\) at row 1, field 0"
  ):
    check_split(split, model, "valid")
