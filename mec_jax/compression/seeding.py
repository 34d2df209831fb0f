"""Row samples drawn with probability proportional to weight, and greedy k-means++ seeding.

`sample_by_weight` draws a k-means sample on the host (numpy, one pass over the weights);
`seed_jit` runs greedy weighted k-means++ (D^2 x weight sampling, best of ``num_trials``
candidates per centre, as scikit-learn's ``_kmeans_plusplus``) for all ``M`` sub-spaces at once
(``vmap``), row-parallel over the ``('data',)`` mesh; its draws do not depend on the number of
devices.

References:
  Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from mec_jax.compression.streaming import PRECISION, psum, shard_sample
from mec_jax.mesh import DATA_AXIS

_SAMPLE_SALT = 0x5A4D  # folded into a sub-space's key for its row sample


def default_local_trials(num_clusters: int) -> int:
  """scikit-learn's greedy k-means++ candidate count, ``2 + floor(ln K)``."""
  return 2 + int(math.log(num_clusters))


def sample_by_weight(keys, x, w, num_subspaces: int, size: int, normalize) -> np.ndarray:
  """``[size, M, s]``: sub-space ``m`` of ``size`` rows drawn with probability ``∝ w`` (key m)."""
  cum = np.cumsum(w, dtype=np.float64)
  last = int(np.flatnonzero(w > 0)[-1])
  ids = np.empty((size, num_subspaces), np.int64)
  for m in range(num_subspaces):
    bits = jax.random.bits(jax.random.fold_in(keys[m], _SAMPLE_SALT), (4,), jnp.uint32)
    uniform = np.random.default_rng(np.asarray(bits)).random(size)
    # The first row whose cumulative weight exceeds the target; zero-weight rows never are.
    ids[:, m] = np.minimum(np.searchsorted(cum, uniform * cum[-1], side="right"), last)
  rows = normalize(x[ids.ravel()]).reshape(size, num_subspaces, num_subspaces, -1)
  return rows[:, np.arange(num_subspaces), np.arange(num_subspaces)]


def _sq_dists(x: jax.Array, x_sq: jax.Array, points: jax.Array) -> jax.Array:
  """``[n, p]`` squared distances ``||x_i - points_j||^2`` (clamped at 0 against roundoff)."""
  cross = jnp.matmul(x, points.T, precision=PRECISION)
  return jnp.maximum(x_sq[:, None] - 2.0 * cross + jnp.sum(points * points, -1)[None, :], 0.0)


def _sample_rows(key: jax.Array, x: jax.Array, mass: jax.Array, num: int, axis) -> jax.Array:
  """``[num, d]`` rows drawn i.i.d. with probability proportional to ``mass`` over ALL devices
  of mesh axis ``axis`` (None: the rows here are all the rows).

  Inverse-CDF sampling with the same uniforms on every device: each device knows its slice of
  the global cumulative mass, the owner of each draw contributes the row, ``psum`` shares it.
  The draw therefore does not depend on how many devices hold the rows.
  """
  cum = jnp.cumsum(mass)
  if axis is None:
    num_devices, me, totals = 1, 0, cum[-1:]
  else:
    num_devices, me = lax.axis_size(axis), lax.axis_index(axis)
    totals = lax.all_gather(cum[-1], axis)
  ends = jnp.cumsum(totals)
  starts = ends - totals
  target = jax.random.uniform(key, (num,)) * ends[-1]
  owner = jnp.clip(jnp.searchsorted(ends, target, side="right"), 0, num_devices - 1)
  idx = jnp.clip(jnp.searchsorted(cum, target - starts[me], side="right"), 0, x.shape[0] - 1)
  # Roundoff can land on a trailing zero-mass (padding) row; fall back to the last row with mass.
  last_with_mass = x.shape[0] - 1 - jnp.argmax(mass[::-1] > 0)
  idx = jnp.where(mass[idx] > 0, idx, last_with_mass)
  rows = jnp.where((owner == me)[:, None], x[idx], 0.0)
  return psum(rows, axis)


def _seed_body(key, x, w, num_clusters: int, num_trials: int, num_valid=None, axis=DATA_AXIS):
  """Greedy weighted k-means++ of one sub-space's rows ``x [n, s]``.

  ``num_valid`` (default ``num_clusters``, may be traced) centres are chosen; the slots after
  them stay zero. ``axis``: the mesh axis the rows are split over (None: all rows are here).
  """
  x_sq = jnp.sum(x * x, -1)
  key, first_key = jax.random.split(key)
  first = _sample_rows(first_key, x, w, 1, axis)
  centroids = jnp.zeros((num_clusters, x.shape[1]), x.dtype).at[0].set(first[0])
  d2 = _sq_dists(x, x_sq, first)[:, 0]

  def add_centre(i, carry):
    centroids, d2 = carry
    potential = psum(jnp.sum(w * d2), axis)
    # All mass already sits on centres (fewer distinct rows than clusters): sample by weight.
    mass = jnp.where(potential > 0, w * d2, w)
    candidates = _sample_rows(jax.random.fold_in(key, i), x, mass, num_trials, axis)
    new_d2 = jnp.minimum(d2[:, None], _sq_dists(x, x_sq, candidates))
    best = jnp.argmin(psum(jnp.sum(w[:, None] * new_d2, 0), axis))
    return centroids.at[i].set(candidates[best]), new_d2[:, best]

  stop = num_clusters if num_valid is None else num_valid
  centroids, _ = lax.fori_loop(1, stop, add_centre, (centroids, d2))
  return centroids


@functools.partial(jax.jit, static_argnames=("num_clusters", "num_trials", "chunk_size", "mesh"))
def seed_jit(keys, x, w, *, num_clusters, num_trials, chunk_size, mesh):
  x, w, _ = shard_sample(x, w, mesh, chunk_size)
  seed = functools.partial(_seed_body, num_clusters=num_clusters, num_trials=num_trials)
  run = jax.shard_map(
    jax.vmap(seed, in_axes=(0, 1, None)),
    mesh=mesh,
    in_specs=(P(), P(DATA_AXIS), P(DATA_AXIS)),
    out_specs=P(),
  )
  return run(keys, x, w)
