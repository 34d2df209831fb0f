"""Least-squares codebooks and first-order terms for FIXED codes, in the original table space.

MEC's encoder mixes dimensions, so its latent codebooks are not in the space of the table they
replace. Once the codes are fixed we refit them there: for ``x_v ~ concat_m B_m[c_vm]`` the
m-th slice of the reconstruction depends only on ``c_vm``, so the weighted least-squares
codebook is, per sub-space and code, the popularity-weighted mean of the rows' m-th slices.
This makes `CompressedTable.reconstruct()` approximate the table itself, so it can be swapped
into the stage-A model and initializes stage C's ``concat_m B_m[c_m]`` embedding. (The released
code kept the latent codebooks, which under its frozen random encoder are in no meaningful space.)

Memory: rows are visited in blocks of `CHUNK_ROWS` and accumulated in float64 ``[M, K, s]``
sums, so no float64 (or other) copy of the whole table or of the codes is ever made.
"""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 1 << 16


def _check_codes(codes, num_rows: int, codebook_size: int) -> np.ndarray:
  codes = np.asarray(codes)
  if codes.ndim != 2 or codes.shape[0] != num_rows:
    raise ValueError(f"codes must be [{num_rows}, num_subspaces], got shape {codes.shape}")
  if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
    raise ValueError(f"codes must lie in [0, {codebook_size}), got [{codes.min()}, {codes.max()}]")
  return codes


def _weights(weights, num_rows: int) -> np.ndarray:
  if weights is None:
    return np.ones(num_rows)
  weights = np.asarray(weights, np.float64)
  if weights.shape != (num_rows,) or (weights.size and weights.min() < 0):
    raise ValueError(f"weights must be non-negative with shape ({num_rows},), got {weights.shape}")
  return weights


def refit_codebooks(table, codes, weights, codebook_size: int) -> np.ndarray:
  """float32 ``[M, K, d / M]``: weighted per-code means of the table's sub-vectors.

  Args:
    table: ``[V, d]`` the table the codes stand for.
    codes: ``[V, M]`` integer codes.
    weights: ``[V]`` row weights (popularity weights), or None.
    codebook_size: K.

  A code no row uses gets the weighted mean of its whole sub-space (a neutral value; it is
  never looked up by this table).
  """
  table = np.asarray(table)
  num_rows, dim = table.shape
  codes = _check_codes(codes, num_rows, codebook_size)
  weights = _weights(weights, num_rows)
  num_subspaces = codes.shape[1]
  if dim % num_subspaces:
    raise ValueError(f"table dim {dim} is not divisible by num_subspaces {num_subspaces}")
  sub_dim = dim // num_subspaces
  cells = num_subspaces * codebook_size  # cell m * K + k: code k of sub-space m
  sums = np.zeros(cells * sub_dim)
  mass = np.zeros(cells)
  column_sums = np.zeros(dim)
  offsets = codebook_size * np.arange(num_subspaces)
  for start in range(0, num_rows, CHUNK_ROWS):
    rows = slice(start, start + CHUNK_ROWS)
    w = weights[rows]
    wx = w[:, None] * table[rows].astype(np.float64)
    cell = codes[rows].astype(np.int64) + offsets
    mass += np.bincount(cell.ravel(), np.repeat(w, num_subspaces), cells)
    flat = (cell[:, :, None] * sub_dim + np.arange(sub_dim)).ravel()
    sums += np.bincount(flat, wx.ravel(), cells * sub_dim)
    column_sums += wx.sum(0)
  mass = mass.reshape(num_subspaces, codebook_size, 1)
  sums = sums.reshape(num_subspaces, codebook_size, sub_dim)
  fallback = (column_sums / max(weights.sum(), 1e-30)).reshape(num_subspaces, 1, sub_dim)
  out = np.where(mass > 0, sums / np.maximum(mass, 1e-30), fallback)
  return out.astype(np.float32)


def fit_first_order(codes, bias, weights, codebook_size: int, *, sweeps: int = 25) -> np.ndarray:
  """float32 ``[M, K]`` first-order terms so that ``bias_v ~ sum_m f[m, c_vm]``.

  Weighted least squares ``min sum_v w_v (bias_v - sum_m f[m, c_vm])^2`` by backfitting
  (Gauss-Seidel over sub-spaces; each update is a per-code weighted mean of the residual),
  started from the per-code weighted mean of ``bias / M`` ("first-order terms averaged per
  code"). Every sweep lowers the objective. Unused codes get 0.

  Args:
    codes: ``[V, M]`` integer codes.
    bias: ``[V]`` the full model's first-order (LR) weight of every value.
    weights: ``[V]`` row weights, or None.
    codebook_size: K.
    sweeps: backfitting passes (0 keeps the per-code averages).
  """
  bias = np.asarray(bias, np.float64)
  if bias.ndim != 1:
    raise ValueError(f"bias must be 1-D [vocab_size], got shape {bias.shape}")
  if not np.isfinite(bias).all():
    raise ValueError(
      f"bias has non-finite values (first at row {int(np.argmin(np.isfinite(bias)))})"
    )
  codes = _check_codes(codes, bias.shape[0], codebook_size)
  weights = _weights(weights, bias.shape[0])
  num_subspaces = codes.shape[1]
  columns = [codes[:, m] for m in range(num_subspaces)]  # views: no [V, M] temporaries
  mass = np.stack([np.bincount(c, weights=weights, minlength=codebook_size) for c in columns])
  safe_mass = np.maximum(mass, 1e-30)

  def code_means(values, m):
    sums = np.bincount(columns[m], weights=weights * values, minlength=codebook_size)
    return np.where(mass[m] > 0, sums / safe_mass[m], 0.0)

  first = np.stack([code_means(bias / num_subspaces, m) for m in range(num_subspaces)])
  fitted = sum(first[m, columns[m]] for m in range(num_subspaces))
  for _ in range(sweeps):
    for m in range(num_subspaces):
      partial = fitted - first[m, columns[m]]
      first[m] = code_means(bias - partial, m)
      fitted = partial + first[m, columns[m]]
  return first.astype(np.float32)
