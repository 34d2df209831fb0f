"""`quantize_table`: stage B for one field, table + train counts in, `CompressedTable` out.

The public face of stage B (`QuantizeSettings` is re-exported here); the network and its train
step are in `autoencoder.py`, the training loop in `training.py`.

1. Validate; popularity weights ``w_v = max(1, floor(log2 n_v))`` (all ones for ``no_pwr``).
2. Normalize: subtract the per-dimension mean and divide by the global standard deviation, so
   losses, temperatures and learning rate mean the same on every table. Normalization is an
   affine map, so it changes neither nearest-code assignments of k-means-style quantizers nor
   which codes a row shares with which; it is undone by refitting in step 4. ``kmeans``
   normalizes each block of rows as k-means streams it, the trained variants each sample, batch
   and block they take: no normalized copy of the table is made.
3. Codes: ``kmeans`` runs weighted PQ (k-means per sub-space of the raw table); the other
   variants train an `MECQuantizer` (see `training.py`) and encode every row.
4. Codebooks: refit in the table's own space as popularity-weighted per-code means
   (`refit.refit_codebooks`), so ``reconstruct()`` approximates the table and the artifact can be
   swapped into the stage-A model; with ``bias`` the first-order terms are fit the same way.
5. Statistics: weighted/unweighted reconstruction error in table units, usage entropy / ln K per
   sub-space, how often rare rows get a code tuple of their own, training history.

Variants (``settings.variant``):

* ``mec``: encoder (identity / orthogonal start) -> PQ with straight-through estimator ->
  decoder; codebooks from weighted k-means; PWR-weighted reconstruction + VQ/commitment +
  differentiable balance (``ln K - H(u)``) + InfoNCE with per-row one-position negatives.
* ``no_pwr`` / ``no_balance`` / ``no_contrastive``: ``mec`` with all weights 1 /
  ``lambda_bal = 0`` / ``lambda_con = 0``.
* ``reference``: the released PyTorch script (``vqvae_with_freq_and_contras.py``): PyTorch
  default init, codebooks U(-1/K, 1/K), no straight-through (the encoder never gets a
  gradient), no VQ term, ``(PPL - ln K)^2`` on hard counts (no gradient), one batch-shared
  negative with every position replaced, anchor ``x``, temperature 1, its loss weights
  (1e-4, 2e-3), rows repeated ``w_v`` times. Counts are used as given. What we keep from our
  harness: held-out early stopping instead of the training loss, and the refit of step 4.
* ``kmeans``: weighted PQ by k-means alone on the (normalized) table, no training.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from mec_jax.compression import pq
from mec_jax.compression.losses import popularity_weights
from mec_jax.compression.mesh import check_mesh
from mec_jax.compression.refit import fit_first_order, refit_codebooks
from mec_jax.compression.settings import VARIANTS as VARIANTS
from mec_jax.compression.settings import QuantizeSettings, check_table
from mec_jax.compression.streaming import row_normalizer
from mec_jax.compression.table import CompressedTable
from mec_jax.compression.training import train_quantizer

CHUNK_ROWS = 1 << 16  # rows per block of the whole-table passes (moments, normalization, stats)
# Rows seen at most this often in train (PWR weight 1) count as "rare" in the statistics.
RARE_MAX_COUNT = 3


def row_weights(counts: np.ndarray, settings: QuantizeSettings) -> np.ndarray:
  """float32 ``[V]`` per-row weights the variant trains and refits with."""
  if settings.variant == "no_pwr":
    return np.ones(counts.shape[0], np.float32)
  return popularity_weights(counts)


def table_moments(table: np.ndarray) -> tuple[np.ndarray, float]:
  """``(mean [d] float32, std)``: the per-dimension mean and the global standard deviation
  (``table.std()``), accumulated in float64 over blocks of rows (no whole-table temporary)."""
  num_rows = table.shape[0]
  total, total_sq = np.zeros(table.shape[1]), 0.0
  for start in range(0, num_rows, CHUNK_ROWS):
    block = table[start : start + CHUNK_ROWS].astype(np.float64)
    total += block.sum(0)
  grand = total.sum() / table.size
  for start in range(0, num_rows, CHUNK_ROWS):
    total_sq += float(((table[start : start + CHUNK_ROWS].astype(np.float64) - grand) ** 2).sum())
  return (total / num_rows).astype(np.float32), float(np.sqrt(total_sq / table.size))


def normalized_table(table: np.ndarray, mean: np.ndarray, scale: float) -> np.ndarray:
  """``(table - mean) / scale`` as one new float32 array, filled block by block (for checks:
  stage B itself normalizes each block it takes, `streaming.row_normalizer`)."""
  normalize = row_normalizer(mean, scale, table.shape[1])
  out = np.empty_like(table)
  for start in range(0, table.shape[0], CHUNK_ROWS):
    rows = slice(start, start + CHUNK_ROWS)
    out[rows] = normalize(table[rows])
  return out


def reconstruction_errors(table, reconstruction, weights) -> dict:
  """Mean squared row error ``||x_hat - x||^2``: popularity-weighted, unweighted, and relative
  to the (weighted) total variance of the table.

  ``reconstruction`` is a ``[V, d]`` array or a `CompressedTable` (decoded block by block, so
  the dense reconstruction never exists whole); sums are float64 over blocks of rows.
  """
  w = np.asarray(weights, np.float64)
  blocks = range(0, table.shape[0], CHUNK_ROWS)
  mean = sum(w[s : s + CHUNK_ROWS] @ table[s : s + CHUNK_ROWS].astype(np.float64) for s in blocks)
  mean = mean / w.sum()
  weighted = unweighted = centered = 0.0
  for start in blocks:
    rows = slice(start, start + CHUNK_ROWS)
    x = table[rows].astype(np.float64)
    if isinstance(reconstruction, CompressedTable):
      x_hat = reconstruction.reconstruct(start, start + CHUNK_ROWS)
    else:
      x_hat = reconstruction[rows]
    err = ((np.asarray(x_hat, np.float64) - x) ** 2).sum(1)
    weighted += float(w[rows] @ err)
    unweighted += float(err.sum())
    centered += float(w[rows] @ ((x - mean) ** 2).sum(1))
  weighted /= w.sum()
  return {
    "recon_error_weighted": weighted,
    "recon_error_unweighted": unweighted / table.shape[0],
    "recon_error_weighted_relative": weighted / max(centered / w.sum(), 1e-30),
  }


def code_sharing(
  codes: np.ndarray, counts: np.ndarray, rare_max_count: int = RARE_MAX_COUNT
) -> dict:
  """How distinct the code tuples of rare rows (train count <= ``rare_max_count``) are.

  Returns ``rare_rows``, ``rare_distinct_fraction`` (share of rare rows whose code tuple no other
  row has), ``rare_tuple_fraction`` (distinct tuples among the rare rows / rare rows: 1 when no
  two rare rows share a tuple, small when they are merged into few codes),
  ``rare_mean_rows_per_code`` (mean size of the group of rows sharing a rare row's tuple, itself
  included) and ``distinct_code_fraction`` (distinct tuples / rows, all rows).
  """
  codes = np.asarray(codes)
  bits = int(codes.max(initial=0)).bit_length()
  if bits * codes.shape[1] <= 63:  # one int64 key per tuple sorts much faster than void rows
    tuples = np.zeros(codes.shape[0], np.int64)
    for m in range(codes.shape[1]):
      tuples = (tuples << bits) | codes[:, m]
  else:
    codes = np.ascontiguousarray(codes)
    tuples = codes.view(np.dtype((np.void, codes.dtype.itemsize * codes.shape[1]))).ravel()
  _, inverse, group_size = np.unique(tuples, return_inverse=True, return_counts=True)
  sizes = group_size[inverse.ravel()]
  rare = counts <= rare_max_count
  out = {
    "rare_max_count": rare_max_count,
    "rare_rows": int(rare.sum()),
    "distinct_code_fraction": float(group_size.size / max(codes.shape[0], 1)),
  }
  if rare.any():
    out["rare_distinct_fraction"] = float((sizes[rare] == 1).mean())
    out["rare_tuple_fraction"] = float(np.unique(inverse.ravel()[rare]).size / rare.sum())
    out["rare_mean_rows_per_code"] = float(sizes[rare].mean())
  return out


def quantize_table(
  key: jax.Array | None,
  table,
  counts,
  settings: QuantizeSettings,
  *,
  bias=None,
  progress: Callable[[int, dict], None] | None = None,
  mesh: Mesh | None = None,
  name: str = "",
) -> CompressedTable:
  """Compresses one ``[V, d]`` embedding table into codes + codebooks (DESIGN §2).

  Args:
    key: PRNG key, or None for ``jax.random.key(settings.seed)``.
    table: ``[V, d]`` float array (numpy or JAX), the stage-A embedding table.
    counts: ``[V]`` non-negative train-split counts ``n_v`` of each value (the caller decides
      which split; `reference` takes them as given too); whole numbers, any dtype (a float
      count such as 2.5 is refused, never floored).
    settings: `QuantizeSettings`.
    bias: optional ``[V]`` first-order (LR) weights of the same values; compressed to
      ``first_order [M, K]`` with `fit_first_order`.
    progress: optional ``callback(epoch, metrics)`` called after every training epoch, with the
      0-based epoch index and float metrics (mean losses, ``shipped_error``); training may stop
      before ``settings.epochs`` (early stopping) and ``kmeans`` never calls it.
    mesh: 1-D ``('data',)`` mesh for k-means and the train step (default: all devices).
    name: field name, used in messages and stored in the artifact.

  Returns:
    A `CompressedTable` whose codebooks live in the table's embedding space.

  Raises:
    ValueError: non-finite rows (the first one is named), a latent dim not divisible by
      ``num_subspaces``, ``codebook_size`` < 2 or above the number of distinct rows, counts of the
      wrong shape, negative or fractional, bias of the wrong shape, an unknown variant.
  """
  if not isinstance(settings, QuantizeSettings):
    raise ValueError(f"settings must be a QuantizeSettings, got {type(settings).__name__}")
  table, counts = check_table(table, counts, settings, name)
  if bias is not None and np.shape(bias) != (table.shape[0],):
    raise ValueError(
      f"table {name!r}: bias must have shape ({table.shape[0]},), got {np.shape(bias)}"
    )
  mesh = check_mesh(mesh)
  key = jax.random.key(settings.seed) if key is None else key
  start = time.perf_counter()
  weights = row_weights(counts, settings)
  num_subspaces, codebook_size = settings.num_subspaces, settings.codebook_size

  mean, scale = table_moments(table)
  scale = scale or 1.0
  if settings.variant == "kmeans":  # normalizes each block as it streams: no normalized copy
    _, codes = pq.train_pq(
      key,
      table,
      weights,
      num_subspaces,
      codebook_size,
      settings.kmeans_iters,
      mesh=mesh,
      center=mean,
      scale=scale,
    )
    info = {"epochs_run": 0, "best_epoch": 0, "stop_reason": "kmeans: not trained"}
  else:
    codes, info = train_quantizer(
      key,
      table,
      weights,
      settings,
      mesh=mesh,
      progress=progress,
      error_scale=scale**2,
      name=name,
      normalize=row_normalizer(mean, scale, table.shape[1]),
    )
  codes = np.asarray(codes)

  codebooks = refit_codebooks(table, codes, weights, codebook_size)
  first_order = None if bias is None else fit_first_order(codes, bias, weights, codebook_size)
  compressed = CompressedTable(
    codes=pq.as_stored_codes(codes, codebook_size),
    codebooks=codebooks,
    first_order=first_order,
    name=name,
    variant=settings.variant,
    usage_entropy=pq.usage_entropy(codes, codebook_size).astype(np.float32),
  )
  # Statistics always use the popularity weights, so every variant is judged on the same scale.
  popularity = popularity_weights(counts)
  stats = reconstruction_errors(table, compressed, popularity)
  stats.update(code_sharing(codes, counts))
  stats.update(info)
  stats["usage_entropy_weighted"] = pq.usage_entropy(codes, codebook_size, popularity).tolist()
  stats["normalization"] = {"scale": scale}
  stats["seconds"] = time.perf_counter() - start
  stats["settings"] = settings.to_dict()
  compressed.stats = stats
  return compressed
