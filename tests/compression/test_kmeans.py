"""Weighted k-means against repeated rows, numpy and scikit-learn."""

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans

from mec_jax.compression import kmeans, seeding, streaming
from mec_jax.compression.kmeans import kmeans_plus_plus, weighted_kmeans


def _mixture(num_rows=1500, dim=4, centres=24, seed=0):
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(centres, dim)) * 3
  x = means[rng.integers(0, centres, num_rows)] + rng.normal(size=(num_rows, dim))
  return x.astype(np.float32), rng.integers(1, 5, num_rows).astype(np.float32)


def _numpy_inertia(x, w, centroids):
  d2 = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
  return float((w * d2.min(1)).sum()), d2.argmin(1)


def test_weighted_equals_kmeans_on_repeated_rows():
  x, w = _mixture(num_rows=700)
  init = x[:12].copy()
  weighted = weighted_kmeans(jax.random.key(0), x, w, 12, num_iters=8, init_centroids=init)
  repeated = weighted_kmeans(
    jax.random.key(0), np.repeat(x, w.astype(int), 0), None, 12, num_iters=8, init_centroids=init
  )
  np.testing.assert_allclose(weighted.centroids, repeated.centroids, atol=1e-5)
  np.testing.assert_allclose(weighted.inertia, repeated.inertia, rtol=1e-5)
  np.testing.assert_array_equal(
    np.repeat(np.asarray(weighted.assignments), w.astype(int)), repeated.assignments
  )


def test_inertia_within_one_percent_of_sklearn():
  x, w = _mixture()
  num_clusters, n_init = 16, 4
  reference = KMeans(num_clusters, n_init=n_init, random_state=0).fit(x, sample_weight=w)
  # Same budget: best of n_init greedy k-means++ starts, Lloyd to convergence.
  ours = min(
    (
      weighted_kmeans(jax.random.key(seed), x, w, num_clusters, num_iters=300)
      for seed in range(n_init)
    ),
    key=lambda r: float(r.inertia),
  )
  assert float(ours.inertia) <= 1.01 * reference.inertia_
  # The reported inertia and assignments are those of the returned centroids.
  inertia, nearest = _numpy_inertia(x, w, np.asarray(ours.centroids))
  np.testing.assert_allclose(float(ours.inertia), inertia, rtol=1e-4)
  np.testing.assert_array_equal(ours.assignments, nearest)


def test_one_lloyd_step_matches_numpy():
  x, w = _mixture(num_rows=400)
  init = x[:8].copy()
  result = weighted_kmeans(jax.random.key(0), x, w, 8, num_iters=1, init_centroids=init)
  labels = ((x[:, None] - init[None]) ** 2).sum(-1).argmin(1)
  expected = np.stack([np.average(x[labels == k], 0, w[labels == k]) for k in range(8)])
  np.testing.assert_allclose(result.centroids, expected, rtol=1e-5, atol=1e-5)


def test_lloyd_never_increases_inertia():
  x, w = _mixture(num_rows=500, seed=1)
  init = x[:10].copy()
  values = [
    float(weighted_kmeans(jax.random.key(0), x, w, 10, num_iters=i, init_centroids=init).inertia)
    for i in range(5)
  ]
  assert all(b <= a * (1 + 1e-6) for a, b in zip(values, values[1:], strict=False))
  assert values[-1] < values[0]


def test_chunked_equals_unchunked_and_no_recompile():
  x, w = _mixture(num_rows=1003)
  key = jax.random.key(3)
  whole = weighted_kmeans(key, x, w, 10, chunk_size=4096)
  chunked = weighted_kmeans(key, x, w, 10, chunk_size=64)  # 16 chunks + zero-weight padding
  np.testing.assert_allclose(whole.centroids, chunked.centroids, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(whole.assignments, chunked.assignments)
  np.testing.assert_allclose(whole.inertia, chunked.inertia, rtol=1e-5)
  programs = (seeding.seed_jit, kmeans._lloyd_jit, streaming._block_jit)
  compiled = [p._cache_size() for p in programs]
  again = weighted_kmeans(jax.random.key(4), x + 1.0, w * 2, 10, chunk_size=64)
  assert [p._cache_size() for p in programs] == compiled
  assert np.isfinite(float(again.inertia))


def test_empty_clusters_are_reseeded():
  x, w = _mixture(num_rows=600)
  init = x[:12].copy()
  init[4:] = 1e3  # eight clusters start empty
  result = weighted_kmeans(jax.random.key(0), x, w, 12, num_iters=20, init_centroids=init)
  assert np.bincount(np.asarray(result.assignments), minlength=12).min() > 0
  good = weighted_kmeans(jax.random.key(0), x, w, 12, num_iters=20)
  assert float(result.inertia) < 1.5 * float(good.inertia)


def test_seeding_respects_weights():
  x, w = _mixture(num_rows=300)
  far = np.full((50, x.shape[1]), 1e3, np.float32)  # far away but weight 0: never a seed
  xs = np.concatenate([x, far])
  ws = np.concatenate([w, np.zeros(50, np.float32)])
  seeds = np.asarray(kmeans_plus_plus(jax.random.key(1), xs, ws, 20))
  assert np.abs(seeds).max() < 100
  # Every seed is a data row.
  assert all((np.abs(x - s).max(1) < 1e-6).any() for s in seeds)


def test_fewer_distinct_rows_than_clusters_stays_finite():
  x = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)
  result = weighted_kmeans(jax.random.key(0), x, None, 5)
  assert np.isfinite(np.asarray(result.centroids)).all()
  assert float(result.inertia) == pytest.approx(0.0, abs=1e-5)


def test_bad_inputs():
  x, w = _mixture(num_rows=50)
  with pytest.raises(ValueError, match="num_clusters"):
    weighted_kmeans(jax.random.key(0), x, w, 51)
  with pytest.raises(ValueError, match="weights"):
    weighted_kmeans(jax.random.key(0), x, w[:10], 4)
  with pytest.raises(ValueError, match="init_centroids"):
    weighted_kmeans(jax.random.key(0), x, w, 4, init_centroids=x[:3])
  with pytest.raises(ValueError, match=r"\[num_rows, dim\]"):
    weighted_kmeans(jax.random.key(0), x[0], None, 1)


def test_sampled_inertia_within_two_percent_of_full_batch():
  # 16 unit-variance clusters on the corners of a hypercube: one clear optimum for K = 16.
  rng = np.random.default_rng(2)
  corners = 6.0 * np.array(np.meshgrid(*[[0, 1]] * 4)).reshape(4, -1).T
  x = (corners[rng.integers(0, 16, 6000)] + rng.normal(size=(6000, 4))).astype(np.float32)
  w = rng.integers(1, 5, 6000).astype(np.float32)
  # Best of three starts each (as n_init), so one unlucky k-means++ seed decides nothing.
  full, sampled = (
    min(
      (weighted_kmeans(jax.random.key(k), x, w, 16, **kwargs) for k in range(7, 10)),
      key=lambda r: float(r.inertia),
    )
    for kwargs in ({"max_points_per_centroid": None}, {"max_points_per_centroid": 32})
  )  # the sampled runs see 16 x 32 = 512 of the 6000 rows
  assert float(sampled.inertia) <= 1.02 * float(full.inertia)
  # Inertia and assignments are over ALL rows, for the returned centroids.
  inertia, nearest = _numpy_inertia(x, w, np.asarray(sampled.centroids))
  np.testing.assert_allclose(float(sampled.inertia), inertia, rtol=1e-4)
  np.testing.assert_array_equal(sampled.assignments, nearest)
  assert not np.allclose(sampled.centroids, full.centroids)  # the sample path really ran


def test_sample_is_drawn_proportional_to_weight():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5000, 2)).astype(np.float32)
  w = rng.integers(0, 10, 5000).astype(np.float32)  # a tenth of the rows have weight 0
  keys = jax.random.split(jax.random.key(0), 2)
  sample = seeding.sample_by_weight(keys, x, w, 2, 40000, lambda rows: rows)  # [40000, 2, 1]
  chosen = np.isin(sample[:, 0, 0], x[w == 0, 0])
  assert not chosen.any()
  # The unweighted sample mean estimates the weighted mean without bias (SE ~ 0.005).
  np.testing.assert_allclose(sample.mean(0)[:, 0], np.average(x, 0, w), atol=0.025)
  assert not np.allclose(sample[:, 0, 0], sample[:, 1, 0])  # each sub-space its own draw
