"""The id policy of `mec_jax.layers.base`: bad ids raise at the data boundary, and inside a table
every out-of-range id (negative, too large, too wide for int32) reads the OOV row, in `Embed` and
`CodebookEmbed` alike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mec_jax.compression.table import CompressedTable
from mec_jax.errors import DataError
from mec_jax.layers import CodebookEmbed
from mec_jax.layers.base import check_ids, lookup_ids
from mec_jax.layers.embed import Embed
from mec_jax.layers.field_embedding import FieldEmbedding
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
