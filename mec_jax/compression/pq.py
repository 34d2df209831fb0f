"""Product quantization: split vectors into sub-vectors, encode each against its own codebook.

A ``[num_rows, dim]`` array is viewed as ``[num_rows, num_subspaces, subspace_dim]``; sub-space
``m`` has a codebook ``[codebook_size, subspace_dim]``, all stacked as ``codebooks [M, K, s]``.
A row's code is the nearest codeword per sub-space; decoding concatenates the codewords.

Codes are computed as int32 in JAX and stored as the smallest unsigned dtype holding K
(`table.code_dtype`); `table.packed_nbytes` is the size of the bit-packed form that
``ceil(log2 K)`` bits per code implies (what `mec_jax.memory` reports).

References:
  Jégou, Douze & Schmid, "Product Quantization for Nearest Neighbor Search", TPAMI 2011.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mec_jax.compression.kmeans import (
  batched_kmeans,
)
from mec_jax.compression.streaming import NEAREST_TILE, PRECISION, nearest, to_tiles
from mec_jax.compression.table import (  # noqa: F401  (re-exported: pq.usage_entropy, ...)
  code_dtype,
  code_usage,
  packed_nbytes,
  usage_entropy,
)
from mec_jax.ops import take_rows


def split_subspaces(x: jax.Array, num_subspaces: int) -> jax.Array:
  """``[..., dim] -> [..., num_subspaces, dim // num_subspaces]``."""
  dim = x.shape[-1]
  if dim % num_subspaces:
    raise ValueError(f"dim {dim} is not divisible by num_subspaces {num_subspaces}")
  return x.reshape(*x.shape[:-1], num_subspaces, dim // num_subspaces)


def _nearest_tile(sub: jax.Array, codebooks: jax.Array) -> jax.Array:
  cross = jnp.einsum("nms,mks->mnk", sub, codebooks, precision=PRECISION)
  d2 = jnp.sum(codebooks * codebooks, -1)[:, None] - 2.0 * cross  # ||sub||^2 is constant per row
  return nearest(d2)[0].T


def nearest_codes(sub: jax.Array, codebooks: jax.Array) -> jax.Array:
  """int32 ``[n, M]`` nearest codeword per sub-space for ``sub [n, M, s]``, ``codebooks [M, K, s]``.

  Rows are taken `NEAREST_TILE` at a time (``lax.map`` over padded tiles), so at most
  ``[M, NEAREST_TILE, K]`` distances exist at once whatever ``n`` is.
  """
  num_rows = sub.shape[0]
  if num_rows <= NEAREST_TILE:
    return _nearest_tile(sub, codebooks)
  codes = lax.map(lambda tile: _nearest_tile(tile, codebooks), to_tiles(sub))
  return codes.reshape(-1, sub.shape[1])[:num_rows]


def lookup(codes: jax.Array, codebooks: jax.Array) -> jax.Array:
  """``[..., M, s]`` codewords for ``codes [..., M]``.

  One lookup in the codebooks flattened to ``[M * K, s]`` (row ``m * K + code``), so the gradient
  w.r.t. the codebooks is one contention-free segment sum (`mec_jax.ops.take_rows`).
  """
  num_subspaces, codebook_size, sub_dim = codebooks.shape
  rows = jnp.asarray(codes, jnp.int32) + codebook_size * jnp.arange(num_subspaces, dtype=jnp.int32)
  return take_rows(codebooks.reshape(-1, sub_dim), rows)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def encode(x: jax.Array, codebooks: jax.Array, *, chunk_size: int = 16384) -> jax.Array:
  """int32 ``[num_rows, M]`` codes of ``x [num_rows, M * s]`` against ``codebooks [M, K, s]``.

  Rows are encoded ``chunk_size`` at a time (``lax.map`` over padded chunks), so the distance
  block is at most ``[chunk_size, M, K]``.
  """
  num_rows = x.shape[0]
  num_subspaces = codebooks.shape[0]
  chunk = max(1, min(chunk_size, num_rows))
  padded = -(-num_rows // chunk) * chunk
  sub = split_subspaces(jnp.pad(x, ((0, padded - num_rows), (0, 0))), num_subspaces)
  codes = lax.map(lambda s: nearest_codes(s, codebooks), sub.reshape(-1, chunk, *sub.shape[1:]))
  return codes.reshape(padded, num_subspaces)[:num_rows]


@jax.jit
def decode(codes: jax.Array, codebooks: jax.Array) -> jax.Array:
  """``[num_rows, M * s]`` concatenated codewords of ``codes [num_rows, M]``."""
  words = lookup(codes, codebooks)
  return words.reshape(*codes.shape[:-1], -1)


def train_pq(
  key: jax.Array,
  x,
  weights,
  num_subspaces: int,
  codebook_size: int,
  iters: int = 25,
  **options,
) -> tuple[jax.Array, np.ndarray]:
  """Weighted product quantizer: weighted k-means (k-means++ init) in every sub-space.

  All sub-spaces run in one batched program (`kmeans.batched_kmeans`); sub-space ``m`` uses
  ``fold_in(key, m)``, so its result equals ``weighted_kmeans(fold_in(key, m), x_m, ...)``.

  Args:
    key: PRNG key.
    x: ``[num_rows, dim]``, ``dim`` divisible by ``num_subspaces`` (numpy: it is streamed).
    weights: ``[num_rows]`` row weights (e.g. popularity weights) or None.
    num_subspaces: M.
    codebook_size: K.
    iters: Lloyd iterations per sub-space.
    **options: `kmeans.batched_kmeans`'s keywords (``chunk_size``, ``mesh``,
      ``max_points_per_centroid``, ``refine_iters``; ``center``, ``scale``: quantize
      ``(x - center) / scale`` without making that copy), with its defaults.

  Returns:
    ``(codebooks [M, K, s] float32, codes [num_rows, M] int32 numpy)``.
  """
  keys = jnp.stack([jax.random.fold_in(key, m) for m in range(num_subspaces)])
  result = batched_kmeans(
    keys,
    x,
    weights,
    num_subspaces,
    codebook_size,
    num_iters=iters,
    **options,
  )
  return result.centroids, result.assignments


def as_stored_codes(codes, codebook_size: int) -> np.ndarray:
  """Codes as the smallest unsigned numpy dtype holding ``codebook_size`` (uint8 for K <= 256)."""
  return np.asarray(codes).astype(code_dtype(codebook_size))
