"""Two-level k-means for many clusters: ``K1 = ceil(sqrt(K))`` coarse groups, then each group
into its share of the ``K`` clusters.

A flat Lloyd pass compares every row with every centroid, ``N K`` pairs, and flat k-means++
seeding is sequential over the ``K`` centres. Once one pass passes ``max_flat_pairs`` pairs
(`kmeans.default_max_flat_pairs`: 2^31 on CPUs) `kmeans.batched_kmeans` runs this instead, as
faiss's ``two_level_clustering`` does for large codebooks. CCE at 10x on a 2.2M-id field asks for
55,722 clusters a column: 1.2e11 pairs a pass, ~10 min a pass on 2 cores (bench/RESULTS.md).

1. **Coarse**: the flat weighted k-means (`kmeans.batched_kmeans`: sampled, refined and
   assigned over all rows as usual) into ``K1`` groups per sub-space.
2. **Allocate**: group ``g`` gets ``k_g`` of the ``K`` clusters in proportion to
   ``E_g ** (s / (s + 2))``, ``E_g`` its weighted squared error about its coarse centroid and
   ``s`` the sub-space dimension: the minimizer of ``sum_g E_g k_g ** (-2 / s)``, high-rate
   quantization's distortion of a group cut into ``k_g`` cells. At least one cluster a group and
   at most its row count; the largest remainders settle the rounding, so the ``k_g`` sum to
   ``K`` exactly (`allocate`). On stage-A embeddings (100k rows of `synthetic_large`'s second
   field, K = 1,024, 4 sub-spaces) this came to 7% above flat k-means' inertia, where
   allocating by weight, as faiss does by size, came to 41% above: rare ids sit in tight
   clumps that need few clusters.
3. **Fine**: greedy weighted k-means++ and Lloyd (the flat path's own bodies, `seeding` and
   `kmeans`; ``tol`` relative to the group's own variance) on all rows of each group. Groups of
   similar size share one compiled program: rows are padded to a power of two with weight-0
   rows, and cluster slots to a power of two that an ``inf`` distance penalty keeps out of the
   search. Groups are independent, so they are split over the mesh's devices (no collectives)
   and run one after another on each (``lax.map``), at most `_CALL_FLOATS` padded row floats a
   call.

A row's code is the nearest centroid of its own group: a pass costs about ``N (K1 + K / K1)``
pairs instead of ``N K``. The search is restricted to the group, so the inertia can only be
above what the same centroids give with a flat search (bench/two_level.py measures both against
flat k-means).

References:
  faiss, ``contrib/clustering.py``: ``two_level_clustering`` (sqrt(K) first-level clusters,
  sub-clusters allocated by first-level size);
  Gersho, "Asymptotically optimal block quantization", IEEE Trans. Inf. Theory 1979 (a
  quantizer's distortion falls as ``k ** (-2 / s)`` with its cell count).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mec_jax.compression import kmeans
from mec_jax.compression.seeding import _seed_body
from mec_jax.compression.streaming import local_pass
from mec_jax.mesh import DATA_AXIS

_COARSE_SALT = 0x2C1  # folded into a sub-space's key for its coarse k-means
_FINE_SALT = 0x2C2  # folded into a sub-space's key, then the group's index, for a fine k-means
_MIN_GROUP_ROWS = 8
# Padded row floats of one fine-level call (2^26: 256 MiB): the groups' copies stay a bounded
# block whatever the table's size, as the flat path's streamed passes do.
_CALL_FLOATS = 1 << 26


class _Group(NamedTuple):
  """One coarse group of sub-space ``m``: its rows, cluster count, first cluster index, key."""

  m: int
  members: np.ndarray
  size: int
  offset: int
  key: jax.Array


def coarse_count(num_clusters: int) -> int:
  """``ceil(sqrt(K))``: first-level groups, so a group averages about as many clusters."""
  return math.isqrt(num_clusters - 1) + 1


def _pow2(n: int) -> int:
  return 1 << max(0, int(n) - 1).bit_length()


def allocate(share, rows, total: int) -> np.ndarray:
  """Clusters per group: ``∝ share``, ``1 <= k_g <= rows_g`` where a group has rows (0 where it
  has none), summing to ``total``; the largest remainders (``ideal - k``) settle the rounding.

  Raises:
    ValueError: ``total`` below the number of non-empty groups or above the rows.
  """
  share = np.asarray(share, np.float64)
  rows = np.asarray(rows, np.int64)
  low = (rows > 0).astype(np.int64)
  if not low.sum() <= total <= rows.sum():
    raise ValueError(f"{total} clusters for {low.sum()} groups of {rows.sum()} rows in all")
  share = np.where(rows > 0, share, 0.0)
  share = share if share.sum() > 0 else rows.astype(np.float64)
  ideal = total * share / share.sum()
  k = np.clip(np.floor(ideal), low, rows).astype(np.int64)
  while (gap := total - int(k.sum())) != 0:
    step = 1 if gap > 0 else -1
    room = k < rows if gap > 0 else k > low
    # The groups furthest below (above) their ideal, a cluster each, as many as the gap.
    order = np.argsort(np.where(room, step * (k - ideal), np.inf), kind="stable")
    k[order[: min(abs(gap), int(room.sum()))]] += step
  return k


def _group_errors(x, weights, coarse, normalize, num_subspaces: int, block: int = 1 << 18):
  """``[M, K1]`` weighted squared error of each coarse group about its centroid (by blocks of
  rows: no normalized copy of ``x``)."""
  centroids = np.asarray(coarse.centroids)
  num_groups = centroids.shape[1]
  errors = np.zeros((num_subspaces, num_groups))
  for start in range(0, x.shape[0], block):
    rows = normalize(x[start : start + block]).reshape(-1, num_subspaces, centroids.shape[2])
    groups = coarse.assignments[start : start + block]
    for m in range(num_subspaces):
      err = weights[start : start + block] * ((rows[:, m] - centroids[m, groups[:, m]]) ** 2).sum(1)
      errors[m] += np.bincount(groups[:, m], err, num_groups)
  return errors


def _fine_group(key, x, w, num_valid, tol, num_iters, *, num_clusters, num_trials, chunk):
  """k-means of one group ``x [n, s]`` into its first ``num_valid`` of ``num_clusters`` slots."""
  penalty = jnp.where(jnp.arange(num_clusters) < num_valid, 0.0, jnp.inf)[None]
  init = _seed_body(key, x, w, num_clusters, num_trials, num_valid=num_valid, axis=None)
  x = x[:, None]
  centroids, iters = kmeans._lloyd_body(
    x, w, init[None], tol, num_iters, chunk, penalty=penalty, axis=None
  )
  _, _, inertia, codes, _ = local_pass(x, w, centroids, chunk, penalty, axis=None)
  return centroids[0], codes[:, 0], inertia[0], iters[0]


@functools.partial(jax.jit, static_argnames=("num_clusters", "num_trials", "chunk", "mesh"))
def _fine_jit(keys, x, w, num_valid, tol, num_iters, *, num_clusters, num_trials, chunk, mesh):
  one = functools.partial(
    _fine_group, num_clusters=num_clusters, num_trials=num_trials, chunk=chunk
  )

  def body(keys, x, w, num_valid, tol, num_iters):
    return lax.map(lambda group: one(*group, tol, num_iters), (keys, x, w, num_valid))

  groups = P(DATA_AXIS)
  run = jax.shard_map(
    body,
    mesh=mesh,
    in_specs=(groups, groups, groups, groups, P(), P()),
    out_specs=(groups, groups, groups, groups),
    check_vma=False,  # per-device groups, no collectives: the bodies' carries are not "varying"
  )
  return run(keys, x, w, num_valid, tol, num_iters)


def _fine_batch(
  groups,
  x,
  weights,
  normalize,
  group_rows,
  slots,
  out,
  *,
  tol,
  num_iters,
  num_trials,
  chunk_size,
  mesh,
):
  """Runs the fine k-means of ``groups`` (one bucket's shape) and writes their centroids,
  codes, inertia and iterations into ``out``."""
  centroids, codes, inertia, fine_iters = out
  sub_dim = centroids.shape[2]
  padded = -(-len(groups) // mesh.size) * mesh.size
  xs = np.zeros((padded, group_rows, sub_dim), np.float32)
  ws = np.zeros((padded, group_rows), np.float32)
  valid = np.ones(padded, np.int32)
  group_keys = [g.key for g in groups] + [groups[0].key] * (padded - len(groups))
  for i, g in enumerate(groups):
    xs[i, : len(g.members)] = normalize(x[g.members])[:, g.m * sub_dim : (g.m + 1) * sub_dim]
    ws[i, : len(g.members)] = weights[g.members]
    valid[i] = g.size
  by_group = NamedSharding(mesh, P(DATA_AXIS))
  result = _fine_jit(
    *jax.device_put((jnp.stack(group_keys), xs, ws, valid), by_group),
    jnp.float32(tol),
    jnp.int32(num_iters),
    num_clusters=slots,
    num_trials=num_trials,
    chunk=min(group_rows, _pow2(chunk_size + 1) // 2),
    mesh=mesh,
  )
  group_centroids, group_codes, group_inertia, group_iters = (np.asarray(a) for a in result)
  for i, g in enumerate(groups):
    centroids[g.m, g.offset : g.offset + g.size] = group_centroids[i, : g.size]
    codes[g.members, g.m] = g.offset + group_codes[i, : len(g.members)]
    inertia[g.m] += group_inertia[i]
    fine_iters[g.m] = max(fine_iters[g.m], group_iters[i])


def two_level_kmeans(
  keys: jax.Array,
  x: np.ndarray,
  weights: np.ndarray,
  num_subspaces: int,
  num_clusters: int,
  *,
  flat: Callable[..., kmeans.KMeansResult],
  num_iters: int,
  tol: float,
  num_trials: int,
  chunk_size: int,
  mesh: Mesh,
  normalize: Callable[[np.ndarray], np.ndarray],
) -> kmeans.KMeansResult:
  """`kmeans.batched_kmeans`'s result by two-level k-means (module docstring).

  Args:
    keys: ``[M]`` PRNG keys, one per sub-space.
    x: ``[N, M * s]`` float32 rows; ``weights``: ``[N]`` float32.
    flat: ``flat(keys, num_clusters)``, the flat weighted k-means of these rows (the coarse level).
    num_iters, tol, num_trials, chunk_size, mesh: as `kmeans.batched_kmeans` (``num_trials``
      is the fine level's: ``2 + floor(ln(K / K1))`` by default there).
    normalize: the rows' normalization (`streaming.row_normalizer`).

  Returns:
    A `kmeans.KMeansResult` as `kmeans.batched_kmeans`'s; ``num_iters`` adds the coarse
    iterations and the most a group of that sub-space ran.
  """
  num_rows, dim = x.shape
  sub_dim = dim // num_subspaces
  num_groups = coarse_count(num_clusters)
  coarse = flat(jax.vmap(lambda k: jax.random.fold_in(k, _COARSE_SALT))(keys), num_groups)
  centroids = np.zeros((num_subspaces, num_clusters, sub_dim), np.float32)
  codes = np.empty((num_rows, num_subspaces), np.int32)
  inertia = np.zeros(num_subspaces, np.float64)
  fine_iters = np.zeros(num_subspaces, np.int64)
  errors = _group_errors(x, weights, coarse, normalize, num_subspaces)
  options = {
    "tol": tol,
    "num_iters": num_iters,
    "num_trials": num_trials,
    "chunk_size": chunk_size,
    "mesh": mesh,
  }
  buckets: dict[tuple[int, int], list[_Group]] = {}
  for m in range(num_subspaces):
    group_of = coarse.assignments[:, m]
    order = np.argsort(group_of, kind="stable")
    counts = np.bincount(group_of, minlength=num_groups)
    sizes = allocate(errors[m] ** (sub_dim / (sub_dim + 2)), counts, num_clusters)
    starts, offsets = np.cumsum(counts) - counts, np.cumsum(sizes) - sizes
    fine_key = jax.random.fold_in(keys[m], _FINE_SALT)
    for g in np.flatnonzero(sizes):
      members = order[starts[g] : starts[g] + counts[g]]
      shape = (max(_pow2(counts[g]), _MIN_GROUP_ROWS), _pow2(sizes[g]))
      group = _Group(m, members, int(sizes[g]), int(offsets[g]), jax.random.fold_in(fine_key, g))
      buckets.setdefault(shape, []).append(group)
  out = (centroids, codes, inertia, fine_iters)
  for (group_rows, slots), groups in buckets.items():
    # At most ~_CALL_FLOATS padded floats of rows on the devices at a time.
    per_call = max(1, _CALL_FLOATS // (group_rows * sub_dim))
    for start in range(0, len(groups), per_call):
      batch = groups[start : start + per_call]
      _fine_batch(batch, x, weights, normalize, group_rows, slots, out, **options)
  return kmeans.KMeansResult(
    jnp.asarray(centroids),
    codes,
    jnp.asarray(inertia, jnp.float32),
    jnp.asarray(coarse.num_iters + fine_iters, jnp.int32),
  )
