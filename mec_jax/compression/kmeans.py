"""Weighted k-means that scales: sampled k-means++ and Lloyd, one streamed pass over all rows.

For ``N`` rows and ``K`` clusters with ``N > K * max_points_per_centroid`` (faiss's rule, 256 by
default):

1. **Sample** ``S = K * max_points_per_centroid`` rows i.i.d. with probability proportional to
   their weight, and give every sampled row weight 1. The sample is then a draw from the
   weighted empirical distribution, so the sample mean of any per-row quantity (a row's squared
   distance, its share of a cluster) is an unbiased estimate of the weighted mean over all rows:
   the sampled inertia estimates the weighted objective without bias, and, for fixed
   assignments, each sampled cluster mean is an unbiased estimate of the weighted cluster
   mean. (A uniform sample carrying its weights is unbiased too, but spends its rows on light
   rows and its cluster means are ratio estimates whose variance grows with the spread of the
   weights.) Sub-space ``m`` draws its own sample from its own key.
2. **Seed** by greedy weighted k-means++ on the first ``K * seed_points_per_centroid`` (64)
   rows of the sample (D^2 x weight sampling, best of
   ``2 + floor(ln K)`` candidates per centre, as scikit-learn).
3. **Lloyd** on the sample until ``num_iters`` or ``tol``; empty clusters are moved onto the
   sample rows with the largest error.
4. **Refine** with ``refine_iters`` Lloyd steps over all rows, then **assign** every row to its
   nearest final centroid: both are streamed passes (`streaming.stream_pass`) that hold one
   block of rows on the devices at a time.

With fewer rows (or ``max_points_per_centroid=None``) the "sample" is every row with its own
weight and there is no refine step: the full-batch weighted k-means, whose result with integer
weights equals the k-means of the rows repeated by their weights (the released MEC code's
popularity weighting, without the memory blow-up).

The ``M`` sub-spaces of product quantization run as one program: seeding is ``vmap``-ed over
sub-spaces, Lloyd steps and streamed passes compute ``[M, chunk, K]`` distances at once
(`batched_kmeans`); `weighted_kmeans` is the ``M = 1`` case. Rows are split over a 1-D
``('data',)`` mesh with ``jax.shard_map``; per-device sums meet in ``lax.psum``, and sampling is
independent of the number of devices.

References:
  Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007;
  Johnson, Douze & Jégou, "Billion-scale similarity search with GPUs" (faiss's k-means and its
  ``max_points_per_centroid`` subsampling), 2017.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from mec_jax.compression.mesh import check_mesh
from mec_jax.compression.seeding import default_local_trials, sample_by_weight, seed_jit
from mec_jax.compression.streaming import (
  local_pass,
  psum,
  row_normalizer,
  shard_sample,
  stream_pass,
)
from mec_jax.compression.streaming import nearest as nearest  # re-exported (was defined here)
from mec_jax.mesh import DATA_AXIS

DEFAULT_POINTS_PER_CENTROID = 256
DEFAULT_SEED_POINTS_PER_CENTROID = 64
DEFAULT_BLOCK_ROWS = 1 << 18
# Rows per device whose [M, rows, K] distances exist at once: 1024 stays in the CPU's cache and
# was 1.4-1.6x faster than 4096 on 1M x 10 rows, K=256 (bench/RESULTS.md, "Weighted k-means").
DEFAULT_CHUNK_SIZE = 1024
# Lloyd steps over all rows after the sampled ones: 4 brings the inertia to or below faiss's on
# all rows (1M x 10, K=256) for ~1 s more there and ~3 s on a 32M-row table.
DEFAULT_REFINE_ITERS = 4
# Row-centroid pairs of one Lloyd pass (per sub-space) above which `two_level` runs instead.
# CPU: CCE at 10x on `synthetic_large` asks 55,722 clusters of 2.2M rows (29 x 2^32 pairs): one
# flat pass is ~10 min, the two-level k-means 200 s; its 10,161 clusters of 361k rows on the next
# field (0.85 x 2^32) ran flat for over 16 min. At 25x (2,786 clusters of 713k sampled rows,
# 0.92 x 2^31) the whole stage B took 830 s, flat. Hence 2^31 (bench/RESULTS.md, "Two-level
# k-means"). Accelerators: a flat pass of 2^40 pairs at s = 10 is ~2e13 flop, seconds on one GPU
# (not measured here), so the exact flat k-means runs there up to that.
CPU_MAX_FLAT_PAIRS = 1 << 31
ACCELERATOR_MAX_FLAT_PAIRS = 1 << 40


def default_max_flat_pairs(mesh: Mesh) -> int:
  """The platform's flat-pass limit for ``mesh``'s devices (`CPU_MAX_FLAT_PAIRS` on CPUs)."""
  cpu = mesh.devices.flat[0].platform == "cpu"
  return CPU_MAX_FLAT_PAIRS if cpu else ACCELERATOR_MAX_FLAT_PAIRS


class KMeansResult(NamedTuple):
  """Output of `weighted_kmeans` (`batched_kmeans`: every field gains a leading ``M`` axis,
  ``assignments`` becomes ``[num_rows, M]``).

  Attributes:
    centroids: float32 ``[num_clusters, dim]``.
    assignments: int32 ``[num_rows]`` numpy array, index of each row's nearest centroid.
    inertia: float32 scalar, ``sum_i w_i ||x_i - centroids[assignments_i]||^2`` over all rows.
    num_iters: int32 scalar, Lloyd iterations run on the sample (fewer than asked when ``tol``
      stopped it) plus the ``refine_iters`` passes over all rows.
  """

  centroids: jax.Array
  assignments: np.ndarray
  inertia: jax.Array
  num_iters: jax.Array


# ----------------------------------------------------------------------------------------------
# Per-device bodies (run under shard_map: `x`, `w` are this device's rows of the sample).


def _reseed_empty(centroids, mass, x, w, min_d2, valid, axis: str | None):
  """Moves each empty cluster of one sub-space onto a row with one of the largest errors.

  ``valid [K]`` marks the clusters that exist (False: a padding slot that stays put); ``axis``
  is the mesh axis the rows are split over (None: all rows are here).
  """
  empty = (mass <= 0) & valid
  k = min(centroids.shape[0], x.shape[0])

  def reseed(centroids):
    err, idx = lax.top_k(w * min_d2, k)
    if axis is None:
      candidates = x[idx]
    else:
      _, best = lax.top_k(lax.all_gather(err, axis, tiled=True), k)
      # Row `best[r]` lives on device best[r] // k; its owner contributes it, psum shares it.
      mine = (best // k == lax.axis_index(axis))[:, None]
      candidates = lax.psum(jnp.where(mine, x[idx[best % k]], 0.0), axis)
    rank = jnp.cumsum(empty) - 1
    moved = candidates[jnp.clip(rank, 0, k - 1)]
    return jnp.where((empty & (rank < k))[:, None], moved, centroids)

  return lax.cond(jnp.any(empty), reseed, lambda c: c, centroids)


def _lloyd_body(x, w, centroids, tol, num_iters, chunk: int, penalty=None, axis=DATA_AXIS):
  """Lloyd on ``x [n, M, s]`` for all sub-spaces; each stops on its own ``tol`` / ``num_iters``.

  ``penalty [M, K]`` (optional, 0 or ``inf``) takes padding slots out of the search; ``axis``
  is the mesh axis the rows are split over (None: all rows are on this device).
  """
  total_w = psum(jnp.sum(w), axis)
  mean = psum(jnp.einsum("n,nms->ms", w, x), axis) / total_w
  variance = psum(jnp.einsum("n,nms->ms", w, (x - mean) ** 2), axis) / total_w
  # As in scikit-learn: tol is relative to the mean per-feature variance of the data.
  tol_abs = tol * jnp.mean(variance, -1)

  def live(it, shift):
    return (it < num_iters) & (shift > tol_abs)

  def step(state):
    it, centroids, shift, iters = state
    active = live(it, shift)
    sums, mass, _, _, min_d2 = local_pass(x, w, centroids, chunk, penalty, axis)
    updated = jnp.where(mass[..., None] > 0, sums / jnp.maximum(mass, 1e-30)[..., None], centroids)
    reseed = functools.partial(_reseed_empty, axis=axis)
    updated = jax.vmap(reseed, in_axes=(0, 0, 1, None, 0, 0))(updated, mass, x, w, min_d2, valid)
    moved = jnp.sum((updated - centroids) ** 2, (1, 2))
    centroids = jnp.where(active[:, None, None], updated, centroids)
    return it + 1, centroids, jnp.where(active, moved, shift), iters + active

  num_subspaces = centroids.shape[0]
  valid = jnp.ones(centroids.shape[:2], bool) if penalty is None else jnp.isfinite(penalty)
  shift, iters = jnp.full((num_subspaces,), jnp.inf), jnp.zeros((num_subspaces,), jnp.int32)
  state = (jnp.int32(0), centroids, shift, iters)
  _, centroids, _, iters = lax.while_loop(lambda s: jnp.any(live(s[0], s[2])), step, state)
  return centroids, iters


# ----------------------------------------------------------------------------------------------
# Jitted programs on the (small) sample, and the driver.


@functools.partial(jax.jit, static_argnames=("chunk_size", "mesh"))
def _lloyd_jit(x, w, init, tol, num_iters, *, chunk_size, mesh):
  x, w, chunk = shard_sample(x, w, mesh, chunk_size)
  run = jax.shard_map(
    functools.partial(_lloyd_body, chunk=chunk),
    mesh=mesh,
    in_specs=(P(DATA_AXIS), P(DATA_AXIS), P(), P(), P()),
    out_specs=(P(), P()),
  )
  return run(x, w, init, tol, num_iters)


def _check_inputs(x, weights, num_clusters: int):
  x = np.asarray(x, np.float32)
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"x must be a non-empty [num_rows, dim] array, got shape {x.shape}")
  weights = np.ones(x.shape[0], np.float32) if weights is None else weights
  weights = np.asarray(weights, np.float32)
  if weights.shape != (x.shape[0],):
    raise ValueError(f"weights must have shape ({x.shape[0]},), got {weights.shape}")
  if weights.min() < 0 or not weights.sum() > 0:
    raise ValueError("weights must be non-negative with a positive sum")
  if not 1 <= num_clusters <= x.shape[0]:
    raise ValueError(f"num_clusters must be in [1, num_rows={x.shape[0]}], got {num_clusters}")
  return x, weights


def batched_kmeans(
  keys: jax.Array,
  x,
  weights,
  num_subspaces: int,
  num_clusters: int,
  *,
  num_iters: int = 25,
  tol: float = 0.0,
  init_centroids=None,
  num_local_trials: int | None = None,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
  mesh: Mesh | None = None,
  max_points_per_centroid: int | None = DEFAULT_POINTS_PER_CENTROID,
  refine_iters: int = DEFAULT_REFINE_ITERS,
  block_rows: int = DEFAULT_BLOCK_ROWS,
  seed_points_per_centroid: int = DEFAULT_SEED_POINTS_PER_CENTROID,
  center=None,
  scale: float = 1.0,
  max_flat_pairs: float | None = None,
) -> KMeansResult:
  """Weighted k-means in each of the ``M`` sub-spaces of ``x``, all in one program.

  Args:
    keys: ``[M]`` PRNG keys, one per sub-space (its sample and its k-means++ seeding).
    x: ``[num_rows, M * s]`` rows; sub-space ``m`` is columns ``[m * s, (m + 1) * s)``.
    weights: ``[num_rows]`` non-negative row weights, or None for all ones.
    num_subspaces: M.
    num_clusters: K, per sub-space.
    num_iters: maximum Lloyd iterations (on the sample).
    tol: stop early once the squared centroid shift is ``<= tol * mean feature variance``
      (0 runs until the centroids stop moving or ``num_iters``).
    init_centroids: ``[M, K, s]`` starting centroids instead of k-means++.
    num_local_trials: greedy k-means++ candidates per centre (default ``2 + floor(ln K)``,
      1 is plain k-means++).
    chunk_size: rows whose distances to all centroids are computed at once, per device.
    mesh: 1-D ``('data',)`` mesh to split rows over (default: all devices).
    max_points_per_centroid: seed and run Lloyd on ``K *`` this many rows sampled ``∝``
      weight once there are more rows than that; None or 0: every row (full batch).
    refine_iters: Lloyd steps over all rows after the sampled ones (only when sampling).
    block_rows: rows per block of the streamed passes over all rows.
    seed_points_per_centroid: k-means++ runs on the first ``K *`` this many sampled rows
      (a prefix of an i.i.d. sample is one too; seeding is the sequential part).
    center, scale: cluster ``(x - center) / scale`` instead of ``x`` (``center [M * s]``),
      normalizing the sample and each streamed block as it is used: no normalized copy.
    max_flat_pairs: above this many row-centroid pairs in a Lloyd pass (rows: the sample,
      or all rows when not sampling), and without ``init_centroids``, run
      `two_level.two_level_kmeans` (``sqrt(K)`` coarse groups, then each group on its own);
      None: the platform's (`default_max_flat_pairs`: 2^31 on CPUs, 2^40 on accelerators);
      ``math.inf``: always flat.

  Returns:
    A `KMeansResult` with a leading ``M`` axis: centroids ``[M, K, s]``, assignments
    ``[num_rows, M]``, inertia and num_iters ``[M]``.
  """
  x, weights = _check_inputs(x, weights, num_clusters)
  if x.shape[1] % num_subspaces:
    raise ValueError(f"dim {x.shape[1]} is not divisible by num_subspaces {num_subspaces}")
  sub_dim = x.shape[1] // num_subspaces
  for name, value in (("num_iters", num_iters), ("refine_iters", refine_iters)):
    if value < 0:
      raise ValueError(f"{name} must be >= 0, got {value}")
  if max_points_per_centroid is not None and max_points_per_centroid < 0:
    raise ValueError(f"max_points_per_centroid must be >= 0 or None, got {max_points_per_centroid}")
  trials = default_local_trials(num_clusters) if num_local_trials is None else num_local_trials
  if trials < 1:
    raise ValueError(f"num_local_trials must be >= 1, got {trials}")
  mesh = check_mesh(mesh)
  normalize = row_normalizer(center, scale, x.shape[1])
  sample_size = num_clusters * (max_points_per_centroid or 0)
  sampled = 0 < sample_size < x.shape[0]
  pass_rows = sample_size if sampled else x.shape[0]
  if max_flat_pairs is None:
    max_flat_pairs = default_max_flat_pairs(mesh)
  if init_centroids is None and pass_rows * num_clusters > max_flat_pairs:
    from mec_jax.compression import two_level  # noqa: PLC0415 (it builds on this module)

    def flat(coarse_keys, coarse_clusters):
      return batched_kmeans(
        coarse_keys,
        x,
        weights,
        num_subspaces,
        coarse_clusters,
        num_iters=num_iters,
        tol=tol,
        chunk_size=chunk_size,
        mesh=mesh,
        max_points_per_centroid=max_points_per_centroid,
        refine_iters=refine_iters,
        block_rows=block_rows,
        seed_points_per_centroid=seed_points_per_centroid,
        center=center,
        scale=scale,
        max_flat_pairs=math.inf,
      )

    per_group = -(-num_clusters // two_level.coarse_count(num_clusters))
    logging.info(
      "k-means: two-level (%d rows x %d clusters a pass > %g pairs): %d groups of ~%d clusters",
      pass_rows,
      num_clusters,
      max_flat_pairs,
      two_level.coarse_count(num_clusters),
      per_group,
    )
    return two_level.two_level_kmeans(
      keys,
      x,
      weights,
      num_subspaces,
      num_clusters,
      flat=flat,
      num_iters=num_iters,
      tol=tol,
      num_trials=default_local_trials(per_group) if num_local_trials is None else trials,
      chunk_size=chunk_size,
      mesh=mesh,
      normalize=normalize,
    )
  if sampled:
    sample = sample_by_weight(keys, x, weights, num_subspaces, sample_size, normalize)
    sample_w = np.ones(sample_size, np.float32)
  else:
    sample = normalize(x).reshape(x.shape[0], num_subspaces, sub_dim)
    sample_w, refine_iters = weights, 0
  if init_centroids is None:
    # Any prefix of an i.i.d. sample is an i.i.d. sample: seed on the first rows only.
    seed_rows = num_clusters * seed_points_per_centroid if sampled else x.shape[0]
    init_centroids = seed_jit(
      keys,
      sample[:seed_rows],
      sample_w[:seed_rows],
      num_clusters=num_clusters,
      num_trials=trials,
      chunk_size=chunk_size,
      mesh=mesh,
    )
  init_centroids = jnp.asarray(init_centroids, jnp.float32)
  if init_centroids.shape != (num_subspaces, num_clusters, sub_dim):
    raise ValueError(
      f"init_centroids must have shape ({num_subspaces}, {num_clusters}, {sub_dim}), "
      f"got {init_centroids.shape}"
    )
  centroids, iters = _lloyd_jit(
    sample,
    sample_w,
    init_centroids,
    jnp.float32(tol),
    jnp.int32(num_iters),
    chunk_size=chunk_size,
    mesh=mesh,
  )
  passes = functools.partial(
    stream_pass,
    x,
    weights,
    mesh=mesh,
    chunk_size=chunk_size,
    block_rows=block_rows,
    transform=normalize,
  )
  for _ in range(refine_iters):
    sums, mass, _, _ = passes(centroids, with_codes=False)
    means = sums / np.maximum(mass, 1e-30)[..., None]
    centroids = jnp.asarray(np.where(mass[..., None] > 0, means, centroids), jnp.float32)
  _, _, inertia, codes = passes(centroids, with_codes=True)
  return KMeansResult(centroids, codes, jnp.asarray(inertia, jnp.float32), iters + refine_iters)


def weighted_kmeans(
  key: jax.Array, x, weights, num_clusters: int, *, init_centroids=None, **options
) -> KMeansResult:
  """Weighted k-means of the rows of ``x`` (see the module docstring for the algorithm): the
  one-sub-space case of `batched_kmeans`.

  Args:
    key: PRNG key for the row sample and the k-means++ seeding.
    x: ``[num_rows, dim]`` data (numpy, or anything ``np.asarray`` takes).
    weights: ``[num_rows]`` non-negative row weights, or None for all ones.
    num_clusters: K.
    init_centroids: ``[num_clusters, dim]`` starting centroids instead of k-means++.
    **options: `batched_kmeans`'s keywords (``num_iters``, ``tol``, ``num_local_trials``,
      ``chunk_size``, ``mesh``, ``max_points_per_centroid``, ``refine_iters``, ``block_rows``,
      ``seed_points_per_centroid``), with its defaults.

  Returns:
    A `KMeansResult`; ``inertia`` is weighted over all rows, ``assignments`` are for the final
    centroids.
  """
  if init_centroids is not None:
    init_centroids = jnp.asarray(init_centroids, jnp.float32)[None]
  result = batched_kmeans(
    key[None], x, weights, 1, num_clusters, init_centroids=init_centroids, **options
  )
  return KMeansResult(result.centroids[0], result.assignments[:, 0], *(v[0] for v in result[2:]))


def kmeans_plus_plus(
  key: jax.Array,
  x,
  weights,
  num_clusters: int,
  *,
  num_local_trials: int | None = None,
  mesh: Mesh | None = None,
  max_points_per_centroid: int | None = DEFAULT_POINTS_PER_CENTROID,
) -> jax.Array:
  """``[num_clusters, dim]`` weighted k-means++ seeds (no Lloyd iterations)."""
  result = weighted_kmeans(
    key,
    x,
    weights,
    num_clusters,
    num_iters=0,
    num_local_trials=num_local_trials,
    mesh=mesh,
    max_points_per_centroid=max_points_per_centroid,
    refine_iters=0,
  )
  return result.centroids
