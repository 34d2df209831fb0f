"""Product quantizer helpers against numpy brute force."""

import jax
import numpy as np
import pytest

from mec_jax.compression import kmeans, pq


def _brute_force_codes(x, codebooks):
  num_subspaces, _, sub_dim = codebooks.shape
  sub = x.reshape(x.shape[0], num_subspaces, sub_dim)
  d2 = ((sub[:, :, None, :] - codebooks[None]) ** 2).sum(-1)  # [n, M, K]
  return d2.argmin(-1)


def test_encode_decode_match_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(301, 12)).astype(np.float32)
  codebooks = rng.normal(size=(3, 16, 4)).astype(np.float32)
  codes = np.asarray(pq.encode(x, codebooks, chunk_size=64))  # 5 chunks, last one padded
  np.testing.assert_array_equal(codes, _brute_force_codes(x, codebooks))
  np.testing.assert_array_equal(codes, pq.encode(x, codebooks, chunk_size=4096))
  decoded = np.asarray(pq.decode(codes, codebooks))
  expected = np.concatenate([codebooks[m, codes[:, m]] for m in range(3)], axis=1)
  np.testing.assert_array_equal(decoded, expected)


def test_train_pq_beats_random_codebook():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(800, 8)).astype(np.float32)
  w = rng.integers(1, 4, 800).astype(np.float32)
  codebooks, codes = pq.train_pq(jax.random.key(0), x, w, 2, 16, 10)
  assert codebooks.shape == (2, 16, 4) and codes.shape == (800, 2)
  np.testing.assert_array_equal(codes, pq.encode(x, codebooks))
  err = np.average(((np.asarray(pq.decode(codes, codebooks)) - x) ** 2).sum(1), weights=w)
  random_books = x[rng.choice(800, 16, replace=False)].reshape(16, 2, 4).transpose(1, 0, 2)
  random_codes = pq.encode(x, random_books)
  random_err = np.average(
    ((np.asarray(pq.decode(random_codes, random_books)) - x) ** 2).sum(1), weights=w
  )
  assert err < 0.8 * random_err


@pytest.mark.parametrize("codebook_size", [2, 3, 17, 256, 257, 1000, 65536, 65537])
@pytest.mark.parametrize("num_rows", [0, 1, 5, 123])
def test_packed_nbytes_is_ceil_log2_k_bits_per_code(codebook_size, num_rows):
  bits = len(np.binary_repr(codebook_size - 1))  # bits of the largest code, counted by numpy
  assert pq.packed_nbytes(num_rows, 3, codebook_size) == -(-num_rows * 3 * bits // 8)


def test_code_dtype_selection():
  assert pq.as_stored_codes(np.array([[0, 255]]), 256).dtype == np.uint8
  assert pq.as_stored_codes(np.array([[0, 256]]), 257).dtype == np.uint16
  assert pq.as_stored_codes(np.array([[0, 1]]), 65536).dtype == np.uint16
  assert pq.as_stored_codes(np.array([[0, 1]]), 65537).dtype == np.uint32


def test_usage_entropy():
  codes = np.array([[0, 0], [1, 0], [2, 0], [3, 1]])
  entropy = pq.usage_entropy(codes, 4)
  np.testing.assert_allclose(entropy[0], 1.0)
  p = np.array([0.75, 0.25])
  np.testing.assert_allclose(entropy[1], -(p * np.log(p)).sum() / np.log(4))
  weighted = pq.usage_entropy(codes, 4, weights=np.array([1.0, 1.0, 1.0, 3.0]))
  np.testing.assert_allclose(weighted[1], np.log(2) / np.log(4))


def test_split_subspaces_rejects_indivisible_dim():
  with pytest.raises(ValueError, match="not divisible"):
    pq.split_subspaces(np.zeros((2, 10)), 3)


def test_batched_subspaces_equal_per_subspace_kmeans():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3000, 8)).astype(np.float32)
  w = rng.integers(1, 4, 3000).astype(np.float32)
  key = jax.random.key(3)
  kwargs = dict(max_points_per_centroid=64, refine_iters=1)  # 512-row samples
  codebooks, codes = pq.train_pq(key, x, w, 2, 8, 6, **kwargs)
  for m in range(2):
    single = kmeans.weighted_kmeans(
      jax.random.fold_in(key, m), x[:, 4 * m : 4 * m + 4], w, 8, num_iters=6, **kwargs
    )
    np.testing.assert_allclose(codebooks[m], single.centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(codes[:, m], single.assignments)
