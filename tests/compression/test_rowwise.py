"""Row-wise int8/int4 quantization: half-step round trip, representable scales, exact bytes."""

import jax
import numpy as np
import pytest

from mec_jax.compression.group_fit import fit_two_factor, group_mean
from mec_jax.compression.rowwise import (
  dequantize_rows,
  pack_int4,
  quantize_rows,
  rowwise_nbytes,
  unpack_int4,
)
from mec_jax.layers.rowwise import RowwiseTable
from mec_jax.memory import field_memories


def _rows(seed=0, vocab=300, dim=10):
  rng = np.random.default_rng(seed)
  x = rng.normal(scale=rng.uniform(1e-4, 3.0, (vocab, 1)), size=(vocab, dim)).astype(np.float32)
  x[0] = 0.7  # a constant row
  x[1] = x[1] * 1e-6 + 123.4  # a tiny range far from zero
  return x


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("scale_dtype", ["float16", "float32"])
def test_round_trip_within_half_a_step(bits, scale_dtype):
  x = _rows()
  q, scale, offset = (np.asarray(a) for a in quantize_rows(x, bits, scale_dtype))
  assert q.dtype == np.uint8 and q.max() <= 2**bits - 1
  # The scale and offset are what the stored dtype holds exactly.
  np.testing.assert_array_equal(scale.astype(scale_dtype).astype(np.float32), scale)
  np.testing.assert_array_equal(offset.astype(scale_dtype).astype(np.float32), offset)
  err = np.abs(np.asarray(dequantize_rows(q, scale, offset)) - x)
  slack = 1e-6 * np.maximum(np.abs(x).max(axis=1), 1.0)  # float32 rounding of the decode
  assert np.all(err <= scale[:, None] / 2 + slack[:, None])
  if scale_dtype == "float32":
    assert err[0].max() == 0.0  # a constant row comes back exactly when its value is stored


def test_grid_covers_every_row():
  x = _rows(1)
  _, scale, offset = (np.asarray(a) for a in quantize_rows(x, 8, "float16"))
  assert np.all(offset <= x.min(axis=1))
  assert np.all(offset + scale * 255 >= x.max(axis=1))


def test_bad_bits_is_a_clear_error():
  with pytest.raises(ValueError, match="bits=3"):
    quantize_rows(np.zeros((2, 2)), 3)
  with pytest.raises(ValueError, match="scale_dtype"):
    rowwise_nbytes(2, 2, 8, "bfloat16", True)


def test_int4_packing_round_trip_odd_dim():
  q = np.random.default_rng(0).integers(0, 16, (7, 5)).astype(np.uint8)
  packed = pack_int4(q)
  assert packed.shape == (7, 3)
  np.testing.assert_array_equal(unpack_int4(packed, 5), q)


@pytest.mark.parametrize("bits, row_bytes", [(8, 40 + 4), (4, 20 + 4)])
def test_bytes_are_what_is_stored(bits, row_bytes):
  x = _rows(vocab=101, dim=40)
  q, scale, offset = (np.asarray(a) for a in quantize_rows(x, bits, "float16"))
  table = RowwiseTable(q, scale, offset, None, bits, "float16", "f")
  values = pack_int4(q) if bits == 4 else q
  stored = values.nbytes + scale.astype(np.float16).nbytes + offset.astype(np.float16).nbytes
  assert table.nbytes(packed=True) == stored == 101 * row_bytes
  assert table.nbytes(packed=False) == q.nbytes + 101 * 4
  (mem,) = field_memories(["f"], [101], 40, {"f": table})
  assert mem.compressed_bytes(packed=True) == stored
  assert round(101 * 160 / stored, 1) == {8: 3.6, 4: 6.7}[bits]


def test_jit_does_not_recompile():
  x = _rows(2)
  quantize_rows(x, 8, "float16")
  with jax.log_compiles():
    before = quantize_rows._cache_size()
    quantize_rows(x + 1.0, 8, "float16")
    assert quantize_rows._cache_size() == before


def test_group_mean_matches_a_loop():
  rng = np.random.default_rng(0)
  x, groups, w = rng.normal(size=(50, 3)), rng.integers(0, 7, 50), rng.uniform(0.5, 4, 50)
  got = group_mean(x, groups, w, 8)
  for g in range(8):
    members = groups == g
    want = (w[members, None] * x[members]).sum(0) / w[members].sum() if members.any() else 0.0
    np.testing.assert_allclose(got[g], want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("combine", ["mult", "sum"])
def test_two_factor_fit_recovers_an_exact_qr_table(combine):
  rng = np.random.default_rng(1)
  vocab, c = 60, 8
  ids = np.arange(vocab)
  quotient, remainder = rng.uniform(0.5, 2, (8, 4)), rng.uniform(0.5, 2, (c, 4))
  x = (
    quotient[ids // c] * remainder[ids % c]
    if combine == "mult"
    else (quotient[ids // c] + remainder[ids % c])
  )
  q, r = fit_two_factor(x, rng.uniform(1, 5, vocab), ids // c, ids % c, 8, c, combine, iters=50)
  fit = q[ids // c] * r[ids % c] if combine == "mult" else q[ids // c] + r[ids % c]
  np.testing.assert_allclose(fit, x, rtol=1e-3, atol=1e-3)
