"""Passes over every row of a large table, streamed from the host in fixed-size blocks.

The table stays where the caller keeps it (a numpy array, possibly memory-mapped): each block of
``block_rows`` rows is copied to the devices, split over the ``('data',)`` mesh, reduced there by
a jitted ``shard_map`` program, and only ``[M, K, s]`` sums and the block's codes come back. Peak
memory is therefore the table plus one block, whatever the number of rows; every block has the
same shape (the last one is padded with weight-0 rows), so the program compiles once.

The math of one chunk of rows against ``M`` codebooks at once (``[M, chunk, K]`` distances) is
`chunk_stats`; the k-means Lloyd steps on a sample use the same function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mec_jax.compression.mesh import round_up, shard_rows
from mec_jax.mesh import DATA_AXIS
from mec_jax.ops import segment_sum

# Exact float32 distances even where the default matmul precision is reduced (TF32 on GPUs).
PRECISION = lax.Precision.HIGHEST
# Rows whose ``[M, rows, K]`` distances (or soft assignments) exist at once in `pq.nearest_codes`
# and the balance term: small enough to stay in the CPU's cache. At M=4, K=256 one
# ``[16384, M, K]`` block costs ~15x more per row than 512-row tiles.
NEAREST_TILE = 512


def to_tiles(x: jax.Array, size: int = NEAREST_TILE) -> jax.Array:
  """``x [n, ...]`` zero-padded to whole tiles and reshaped to ``[ceil(n / size), size, ...]``
  (for ``lax.map``; callers drop or weight out the padding rows)."""
  padded = -(-x.shape[0] // size) * size
  x = jnp.pad(x, [(0, padded - x.shape[0])] + [(0, 0)] * (x.ndim - 1))
  return x.reshape(-1, size, *x.shape[1:])


def nearest(d2: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Row-wise ``(argmin, min)`` of ``d2 [..., K]``; ties go to the lowest index, as argmin.

  XLA's CPU argmin is a variadic reduction about 3x slower than the two plain min-reductions
  used here (bench/kmeans.py); the result is identical.
  """
  low = jnp.min(d2, axis=-1, keepdims=True)
  index = jnp.arange(d2.shape[-1], dtype=jnp.int32)
  idx = jnp.min(jnp.where(d2 <= low, index, d2.shape[-1]), axis=-1)
  return idx, low[..., 0]


def chunk_stats(x: jax.Array, w: jax.Array, centroids: jax.Array, penalty: jax.Array | None = None):
  """Nearest centroid per row and sub-space, and the weighted per-cluster sums of one chunk.

  Args:
    x: ``[c, M, s]`` rows split into sub-spaces.
    w: ``[c]`` row weights (0 for padding).
    centroids: ``[M, K, s]``.
    penalty: optional ``[M, K]`` added to every row's squared distances (``inf`` takes a
      centroid out of the search: padding slots of `two_level`'s groups).

  Returns:
    ``(sums [M, K, s], mass [M, K], inertia [M], codes int32 [c, M], min_d2 [M, c])``.
  """
  num_subspaces, num_clusters, sub_dim = centroids.shape
  cross = jnp.einsum("cms,mks->mck", x, centroids, precision=PRECISION)
  x_sq = jnp.sum(x * x, -1).T
  d2 = x_sq[:, :, None] - 2.0 * cross + jnp.sum(centroids * centroids, -1)[:, None, :]
  if penalty is not None:
    d2 = d2 + penalty[:, None, :]
  idx, min_d2 = nearest(d2)
  min_d2 = jnp.maximum(min_d2, 0.0)
  # One scatter for all sub-spaces: cluster k of sub-space m is segment m * K + k.
  segments = (idx + num_clusters * jnp.arange(num_subspaces)[:, None]).reshape(-1)
  wx = (w[:, None, None] * x).transpose(1, 0, 2).reshape(-1, sub_dim)
  total = num_subspaces * num_clusters
  # One ops.segment_sum of [w * x | w] (a single sort on accelerators, no contended atomics:
  # K rows get the whole chunk).
  both = segment_sum(jnp.concatenate([wx, jnp.tile(w, num_subspaces)[:, None]], 1), segments, total)
  sums = both[:, :sub_dim].reshape(num_subspaces, num_clusters, sub_dim)
  mass = both[:, sub_dim]
  inertia = jnp.sum(w[None, :] * min_d2, -1)
  return sums, mass.reshape(num_subspaces, num_clusters), inertia, idx.T, min_d2


def local_pass(
  x: jax.Array,
  w: jax.Array,
  centroids: jax.Array,
  chunk: int,
  penalty: jax.Array | None = None,
  axis: str | None = DATA_AXIS,
):
  """`chunk_stats` over this device's rows ``x [n, M, s]`` (n a multiple of ``chunk``), by scan.

  Returns:
    ``(sums, mass, inertia)`` summed over all devices of ``axis`` (``psum``; None: these rows
    are all the rows), and this device's ``codes [n, M]`` and ``min_d2 [M, n]``.
  """
  num_subspaces, num_clusters, sub_dim = centroids.shape

  def step(carry, xw):
    sums, mass, inertia, codes, min_d2 = chunk_stats(*xw, centroids, penalty)
    carry = (carry[0] + sums, carry[1] + mass, carry[2] + inertia)
    return carry, (codes, min_d2)

  init = (
    jnp.zeros((num_subspaces, num_clusters, sub_dim)),
    jnp.zeros((num_subspaces, num_clusters)),
    jnp.zeros((num_subspaces,)),
  )
  if axis is not None:
    init = lax.pcast(init, axis, to="varying")  # the carry accumulates per-device rows
  xs = (x.reshape(-1, chunk, num_subspaces, sub_dim), w.reshape(-1, chunk))
  totals, (codes, min_d2) = lax.scan(step, init, xs)
  min_d2 = min_d2.transpose(1, 0, 2).reshape(num_subspaces, -1)
  return (*psum(totals, axis), codes.reshape(-1, num_subspaces), min_d2)


def psum(value, axis: str | None):
  """``lax.psum`` over ``axis``; the identity for None (code that runs within one device)."""
  return value if axis is None else lax.psum(value, axis)


@functools.partial(jax.jit, static_argnames=("chunk", "mesh", "with_codes"))
def _block_jit(x, w, centroids, *, chunk, mesh, with_codes):
  num_subspaces, _, sub_dim = centroids.shape

  def body(x, w, centroids):
    x = x.reshape(x.shape[0], num_subspaces, sub_dim)
    sums, mass, inertia, codes, _ = local_pass(x, w, centroids, chunk)
    return sums, mass, inertia, codes if with_codes else codes[:0]

  run = jax.shard_map(
    body,
    mesh=mesh,
    in_specs=(P(DATA_AXIS), P(DATA_AXIS), P()),
    out_specs=(P(), P(), P(), P(DATA_AXIS)),
  )
  return run(x, w, centroids)


def row_normalizer(center, scale: float, dim: int) -> Callable[[np.ndarray], np.ndarray]:
  """The map ``rows -> (rows - center) / scale`` (float32) applied to each block taken from a
  table, so no normalized copy of the table exists; the identity for ``(None, 1.0)``."""
  if center is None and scale == 1.0:
    return lambda rows: rows
  center = np.zeros(dim, np.float32) if center is None else np.asarray(center, np.float32)
  if center.shape != (dim,) or not scale > 0:
    raise ValueError(
      f"center must have shape ({dim},) and scale be > 0, got {center.shape}, {scale}"
    )
  return lambda rows: (rows - center) / scale


def block_layout(num_rows: int, num_devices: int, chunk_size: int, block_rows: int):
  """(chunk, block): rows per scan step per device, and rows per streamed block."""
  rows = min(num_rows, block_rows)
  per_device = -(-rows // num_devices)
  chunk = max(1, min(chunk_size, round_up(per_device, 8)))
  return chunk, round_up(per_device, chunk) * num_devices


def shard_sample(x, w, mesh: Mesh, chunk_size: int):
  """Pads the sample ``[S, M, s]`` with weight-0 rows to whole chunks per device and shards it."""
  chunk, padded = block_layout(x.shape[0], mesh.size, chunk_size, x.shape[0])
  x = shard_rows(jnp.pad(x, ((0, padded - x.shape[0]), (0, 0), (0, 0))), mesh)
  return x, shard_rows(jnp.pad(w, (0, padded - w.shape[0])), mesh), chunk


def stream_pass(
  x: np.ndarray,
  w: np.ndarray,
  centroids: jax.Array,
  *,
  mesh: Mesh,
  chunk_size: int,
  block_rows: int,
  with_codes: bool,
  transform: Callable[[np.ndarray], np.ndarray] | None = None,
):
  """One pass over all rows of ``x [N, M * s]`` against ``centroids [M, K, s]``.

  Args:
    x: ``[N, D]`` float32 rows (numpy; blocks are copied to the devices one at a time).
    w: ``[N]`` float32 row weights.
    centroids: ``[M, K, s]``.
    mesh: 1-D ``('data',)`` mesh each block is split over.
    chunk_size: rows per device whose ``[M, chunk, K]`` distances exist at once.
    block_rows: rows copied to the devices per call (rounded to whole chunks per device).
    with_codes: also return every row's codes.
    transform: applied to each block of rows on the host before it is sent (normalization).

  Returns:
    ``(sums [M, K, s], mass [M, K], inertia [M])`` as float64 numpy, and int32 codes
    ``[N, M]`` (None without ``with_codes``).
  """
  num_rows = x.shape[0]
  num_subspaces = centroids.shape[0]
  chunk, block = block_layout(num_rows, mesh.size, chunk_size, block_rows)
  rows_sharding = NamedSharding(mesh, P(DATA_AXIS))
  centroids = jax.device_put(jnp.asarray(centroids, jnp.float32), NamedSharding(mesh, P()))
  codes = np.empty((num_rows, num_subspaces), np.int32) if with_codes else None
  totals = None
  for start in range(0, num_rows, block):
    stop = min(start + block, num_rows)
    xb, wb = x[start:stop], w[start:stop]
    xb = xb if transform is None else transform(xb)
    if stop - start < block:  # only the last block: pad it with weight-0 rows
      xb = np.concatenate([xb, np.zeros((block - xb.shape[0], x.shape[1]), np.float32)])
      wb = np.concatenate([wb, np.zeros(block - wb.shape[0], np.float32)])
    xb, wb = jax.device_put((xb, wb), rows_sharding)
    *stats, block_codes = _block_jit(
      xb, wb, centroids, chunk=chunk, mesh=mesh, with_codes=with_codes
    )
    stats = [np.asarray(s, np.float64) for s in stats]
    totals = stats if totals is None else [a + b for a, b in zip(totals, stats, strict=True)]
    if with_codes:
      codes[start:stop] = np.asarray(block_codes)[: stop - start]
  return (*totals, codes)
