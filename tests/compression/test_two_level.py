"""Two-level k-means (many clusters): the allocation rule, a Lloyd fixed point per group checked
with numpy, inertia against scikit-learn's flat k-means, and when `batched_kmeans` takes it."""

import logging
import math

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans

from mec_jax.compression import kmeans, two_level
from mec_jax.compression.kmeans import batched_kmeans, weighted_kmeans
from mec_jax.mesh import data_mesh


def _mixture(num_rows=3000, dim=4, centres=40, seed=0):
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(centres, dim)) * 3
  x = means[rng.integers(0, centres, num_rows)] + rng.normal(size=(num_rows, dim))
  return x.astype(np.float32), rng.integers(1, 5, num_rows).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_allocate_sums_to_total_within_bounds(seed):
  rng = np.random.default_rng(seed)
  rows = rng.integers(0, 60, 30)
  share = rng.pareto(1.0, 30) * (rng.random(30) > 0.2)  # some groups with rows but no share
  total = int(rng.integers((rows > 0).sum(), rows.sum() + 1))
  k = two_level.allocate(share, rows, total)
  assert k.sum() == total
  assert np.all(k <= rows) and np.all(k[rows > 0] >= 1) and np.all(k[rows == 0] == 0)


def test_allocate_is_within_one_of_its_share_when_no_bound_binds():
  share = np.array([5.0, 1.0, 3.0, 0.5, 0.5])
  k = two_level.allocate(share, np.full(5, 1000), 101)
  ideal = 101 * share / share.sum()
  assert k.sum() == 101 and np.all(np.abs(k - ideal) < 1)
  np.testing.assert_array_equal(k, [51, 10, 30, 5, 5])  # 50.5 -> 51 by the largest remainder


def test_allocate_refuses_impossible_totals():
  with pytest.raises(ValueError, match="clusters for 2 groups of 5 rows"):
    two_level.allocate([1.0, 1.0, 0.0], [2, 3, 0], 6)
  with pytest.raises(ValueError, match="clusters for 2 groups"):
    two_level.allocate([1.0, 1.0], [2, 3], 1)


def test_two_level_is_a_lloyd_fixed_point_and_reports_its_inertia():
  x, w = _mixture()
  result = weighted_kmeans(jax.random.key(0), x, w, 64, num_iters=200, max_flat_pairs=1)
  centroids, codes = np.asarray(result.centroids), result.assignments
  assert centroids.shape == (64, 4) and codes.shape == (3000,)
  assert len(np.unique(codes)) == 64  # every cluster holds rows: slots were allocated exactly
  # Each centroid is the weighted mean of the rows that carry its code (numpy reference).
  mass = np.bincount(codes, w, 64)
  means = np.stack([np.bincount(codes, w * x[:, j], 64) for j in range(4)], 1) / mass[:, None]
  np.testing.assert_allclose(centroids, means, atol=1e-4)
  inertia = float((w * ((x - centroids[codes]) ** 2).sum(1)).sum())
  np.testing.assert_allclose(float(result.inertia), inertia, rtol=1e-4)


def test_two_level_inertia_near_flat_kmeans():
  x, w = _mixture(num_rows=4000, centres=60)
  flat = KMeans(100, n_init=1, random_state=0).fit(x, sample_weight=w)
  ours = weighted_kmeans(jax.random.key(0), x, w, 100, num_iters=100, max_flat_pairs=1)
  # The search within a group costs a little against a flat search (RESULTS: ~7% on stage-A
  # rows); a wrong allocation or a group left out costs far more than this margin.
  assert float(ours.inertia) <= 1.25 * flat.inertia_
  assert float(ours.inertia) >= 0.9 * flat.inertia_


def test_batched_two_level_sub_spaces_are_independent():
  x, w = _mixture(num_rows=2000, dim=6)
  keys = jax.numpy.stack([jax.random.key(3), jax.random.key(4)])
  both = batched_kmeans(keys, x, w, 2, 32, num_iters=30, max_flat_pairs=1)
  for m in range(2):
    alone = batched_kmeans(
      keys[m : m + 1], x[:, 3 * m : 3 * m + 3], w, 1, 32, num_iters=30, max_flat_pairs=1
    )
    np.testing.assert_allclose(both.centroids[m], alone.centroids[0], atol=1e-5)
    np.testing.assert_array_equal(both.assignments[:, m], alone.assignments[:, 0])


def test_threshold_picks_the_path(monkeypatch, caplog):
  calls = []
  real = two_level.two_level_kmeans

  def spy(*args, **kwargs):
    calls.append(args[4])
    return real(*args, **kwargs)

  monkeypatch.setattr(two_level, "two_level_kmeans", spy)
  x, w = _mixture(num_rows=1000)
  # 1000 rows (not sampled: 16 * 256 > 1000) x 16 clusters = 16,000 pairs a pass.
  weighted_kmeans(jax.random.key(0), x, w, 16, num_iters=3, max_flat_pairs=16_000)
  weighted_kmeans(jax.random.key(0), x, w, 16, num_iters=3, max_flat_pairs=math.inf)
  assert calls == []
  with caplog.at_level(logging.INFO, logger="absl"):
    weighted_kmeans(jax.random.key(0), x, w, 16, num_iters=3, max_flat_pairs=15_999)
  assert calls == [16]
  assert "two-level (1000 rows x 16 clusters a pass > 15999 pairs): 4 groups" in caplog.text
  # Given starting centroids are a flat run's by definition.
  weighted_kmeans(jax.random.key(0), x, w, 16, num_iters=3, max_flat_pairs=1, init_centroids=x[:16])
  assert calls == [16]


def test_flat_limit_is_the_platforms():
  class Device:
    platform = "gpu"

  class GpuMesh:
    devices = np.array([Device()])

  cpu = kmeans.default_max_flat_pairs(data_mesh(1))
  assert cpu == kmeans.CPU_MAX_FLAT_PAIRS < kmeans.default_max_flat_pairs(GpuMesh)


def test_groups_split_over_calls_give_the_same_result(monkeypatch):
  x, w = _mixture(num_rows=2000)
  one_call = weighted_kmeans(jax.random.key(1), x, w, 49, num_iters=20, max_flat_pairs=1)
  monkeypatch.setattr(two_level, "_CALL_FLOATS", 1)  # one group a call
  many_calls = weighted_kmeans(jax.random.key(1), x, w, 49, num_iters=20, max_flat_pairs=1)
  np.testing.assert_allclose(many_calls.centroids, one_call.centroids, atol=1e-6)
  np.testing.assert_array_equal(many_calls.assignments, one_call.assignments)
