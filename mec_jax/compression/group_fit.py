"""Weighted fits of grouped rows: the warm starts of the hashing-trick and QR baselines.

* `group_mean`: per group, the weighted mean of its rows (a hash bucket standing for the ids
  hashed into it; with train counts as weights it minimizes the squared error per impression).
* `fit_two_factor`: ``x_v ~ Q[q_v] (*|+) R[r_v]`` by weighted alternating least squares, the
  QR compositional embedding closest to a given table. Each half step is exact: for the product
  the optimum is element-wise ``Q[q, j] = sum w x R / sum w R^2`` over the group, for the sum it
  is the group mean of the residual.

Cost: every pass reads the ``[V, k]`` table once (``np.add.at`` scatter-adds), O(V k) per pass.
"""

from __future__ import annotations

import numpy as np


def _group_sums(values: np.ndarray, groups: np.ndarray, num_groups: int) -> np.ndarray:
  out = np.zeros((num_groups, values.shape[1]), np.float64)
  np.add.at(out, groups, values)
  return out


def group_mean(
  values: np.ndarray, groups: np.ndarray, weights: np.ndarray, num_groups: int
) -> np.ndarray:
  """float32 ``[num_groups, k]`` weighted means of ``values [V, k]`` by ``groups [V]``.

  Empty groups (no member, or zero total weight) are zero rows.
  """
  values = np.asarray(values, np.float64)
  groups = np.asarray(groups, np.int64)
  weights = np.asarray(weights, np.float64)
  if values.ndim != 2 or groups.shape != values.shape[:1] or weights.shape != groups.shape:
    raise ValueError(
      f"group_mean: values {values.shape}, groups {groups.shape}, weights {weights.shape}; "
      "expected [V, k], [V], [V]"
    )
  if groups.size and (groups.min() < 0 or groups.max() >= num_groups):
    raise ValueError(f"group_mean: groups must lie in [0, {num_groups})")
  sums = _group_sums(values * weights[:, None], groups, num_groups)
  mass = np.bincount(groups, weights=weights, minlength=num_groups)[:, None]
  return np.where(mass > 0, sums / np.where(mass > 0, mass, 1.0), 0.0).astype(np.float32)


def _solve(x, w, other, groups, num_groups, combine, previous):
  """One exact half step: the factor indexed by ``groups`` given the other factor's rows."""
  if combine == "sum":
    return group_mean(x - other, groups, w, num_groups).astype(np.float64)
  num = _group_sums(w[:, None] * x * other, groups, num_groups)
  den = _group_sums(w[:, None] * other * other, groups, num_groups)
  return np.where(den > 1e-12, num / np.where(den > 1e-12, den, 1.0), previous)


def fit_two_factor(
  x: np.ndarray,
  weights: np.ndarray,
  quotient_ids: np.ndarray,
  remainder_ids: np.ndarray,
  num_quotient: int,
  num_remainder: int,
  combine: str = "mult",
  iters: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
  """Weighted ALS for ``x [V, k] ~ Q[quotient_ids] (*|+) R[remainder_ids]``.

  Starts from ``R = 1`` (product) or ``R = 0`` (sum) and ``Q`` = group means, then alternates.

  Args:
    x: float ``[V, k]`` target rows.
    weights: float ``[V]`` non-negative row weights.
    quotient_ids, remainder_ids: int ``[V]`` group of each row in either factor.
    num_quotient, num_remainder: rows of the two factors.
    combine: ``mult`` or ``sum``.
    iters: alternating passes (each updates R then Q).

  Returns:
    float32 ``(Q [num_quotient, k], R [num_remainder, k])``.
  """
  if combine not in ("mult", "sum"):
    raise ValueError(f"fit_two_factor: combine={combine!r}; expected 'mult' or 'sum'")
  x = np.asarray(x, np.float64)
  w = np.asarray(weights, np.float64)
  qi, ri = np.asarray(quotient_ids, np.int64), np.asarray(remainder_ids, np.int64)
  k = x.shape[1]
  remainder = np.full((num_remainder, k), 1.0 if combine == "mult" else 0.0)
  quotient = _solve(x, w, remainder[ri], qi, num_quotient, combine, np.zeros((num_quotient, k)))
  for _ in range(iters):
    remainder = _solve(x, w, quotient[qi], ri, num_remainder, combine, remainder)
    quotient = _solve(x, w, remainder[ri], qi, num_quotient, combine, quotient)
  return quotient.astype(np.float32), remainder.astype(np.float32)
