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
PAIR_CHUNK_ROWS = 1 << 18  # rows per block of the first-order fit (M^2 int64 pairs per row)


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


def fit_first_order(codes, bias, weights, codebook_size: int) -> np.ndarray:
  """float32 ``[M, K]`` first-order terms so that ``bias_v ~ sum_m f[m, c_vm]``.

  The exact weighted least squares ``min sum_v w_v (bias_v - sum_m f[m, c_vm])^2``, solved by
  its normal equations: with ``e_v`` the ``M K`` indicator of row v's codes,
  ``(sum_v w_v e_v e_v^T) f = sum_v w_v bias_v e_v``. The ``[M K, M K]`` matrix is accumulated
  in float64 over blocks of rows (one ``bincount`` of code pairs per block), so the cost is one
  pass over the codes plus a ``[M K, M K]`` solve, whatever the number of rows. The system is
  singular (a constant can move between sub-spaces; unused codes appear nowhere): of its
  solutions we take the minimum-norm one (`_min_norm_solve`), which gives unused codes 0. Every
  solution gives the same fitted ``sum_m f[m, c_vm]``.

  Args:
    codes: ``[V, M]`` integer codes.
    bias: ``[V]`` the full model's first-order (LR) weight of every value.
    weights: ``[V]`` row weights, or None.
    codebook_size: K.
  """
  bias = np.asarray(bias)
  if bias.ndim != 1:
    raise ValueError(f"bias must be 1-D [vocab_size], got shape {bias.shape}")
  if not np.isfinite(bias).all():
    raise ValueError(
      f"bias has non-finite values (first at row {int(np.argmin(np.isfinite(bias)))})"
    )
  codes = _check_codes(codes, bias.shape[0], codebook_size)
  weights = _weights(weights, bias.shape[0])
  num_subspaces = codes.shape[1]
  cells = num_subspaces * codebook_size  # unknown m * K + k: code k of sub-space m
  offsets = codebook_size * np.arange(num_subspaces)
  gram = np.zeros(cells * cells)
  rhs = np.zeros(cells)
  for start in range(0, bias.shape[0], PAIR_CHUNK_ROWS):
    rows = slice(start, start + PAIR_CHUNK_ROWS)
    w = weights[rows]
    cell = codes[rows].astype(np.int64) + offsets  # [n, M]
    pairs = (cell[:, :, None] * cells + cell[:, None, :]).ravel()  # [n * M * M]
    gram += np.bincount(pairs, np.repeat(w, num_subspaces * num_subspaces), cells * cells)
    rhs += np.bincount(cell.ravel(), np.repeat(w * bias[rows], num_subspaces), cells)
  solution = _min_norm_solve(gram.reshape(cells, cells), rhs)
  return solution.reshape(num_subspaces, codebook_size).astype(np.float32)


def _min_norm_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
  """Minimum-norm solution of ``gram @ x = rhs`` for a symmetric positive semi-definite ``gram``.

  The pseudo-inverse from a symmetric eigendecomposition, restricted to the cells that occur
  (the others have zero rows and columns, so the minimum-norm solution gives them 0), with
  ``lstsq``'s default cut-off (eigenvalues below ``eps * n * max``). ``lstsq``'s SVD
  (LAPACK ``gelsd``) failed to converge on a real table's Gram matrix (MovieLens ``user_id``
  under DCNv2, M=4, K=256); ``eigh`` of the same matrix does not.
  """
  solution = np.zeros_like(rhs)
  used = np.flatnonzero(np.diag(gram) > 0)
  if used.size == 0:
    return solution
  values, vectors = np.linalg.eigh(gram[np.ix_(used, used)])
  cutoff = np.finfo(gram.dtype).eps * used.size * max(values.max(), 0.0)
  keep = values > cutoff
  solution[used] = vectors[:, keep] @ ((vectors[:, keep].T @ rhs[used]) / values[keep])
  return solution
