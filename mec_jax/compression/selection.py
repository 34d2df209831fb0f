"""What stage B ships, measured while it trains: refit codebooks and their held-out error.

The artifact is not the quantizer's decoder path ``dec(q(enc(x)))`` but the codes plus codebooks
refit in table space (`refit.refit_codebooks`). Early stopping and the logged error therefore
measure that: codes of a fixed refit sample R of training rows give weighted per-code means, and
the popularity-weighted squared error of those codebooks on a fixed held-out sample S (encoded by
the same model) is the figure epochs are compared on. Both samples are bounded, so one probe costs
the same on a 2k-row and a 32M-row table.

Which epoch ships (`improves`): by default the most evenly used codes among the epochs at most
``quantize.selection_tolerance`` (1%) worse than the k-means start on that error
(``quantize.selection = "balance"``), else the lowest error (``"error"``). Lowest error alone keeps the k-means start or an epoch barely different from
it, since near a k-means optimum every move of a codeword costs weighted error.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mec_jax.compression import pq
from mec_jax.compression.refit import refit_codebooks


@dataclasses.dataclass(frozen=True)
class Probe:
  """Fixed samples of one table (normalized units): refit rows R and held-out rows S.

  Attributes:
    refit_x: float32 ``[R, d]``; refit_w: ``[R]`` their training weights.
    eval_x: float32 ``[S, d]``; eval_w: ``[S]`` their popularity weights (the error's weights).
  """

  refit_x: np.ndarray
  refit_w: np.ndarray
  eval_x: np.ndarray
  eval_w: np.ndarray


def sample_rows(rng: np.random.Generator, rows: np.ndarray, limit: int) -> np.ndarray:
  """``rows`` itself when it has at most ``limit`` entries, else a sorted uniform subset."""
  if rows.size <= limit:
    return rows
  return np.sort(rng.choice(rows, size=limit, replace=False))


def shipped_metrics(
  probe: Probe, refit_codes: np.ndarray, eval_codes: np.ndarray, codebook_size: int
) -> dict[str, float]:
  """Held-out error of the refit the artifact would ship with these codes, and code usage.

  Args:
    probe: the fixed samples.
    refit_codes: ``[R, M]`` codes of ``probe.refit_x``.
    eval_codes: ``[S, M]`` codes of ``probe.eval_x``.
    codebook_size: K.

  Returns:
    ``shipped_error`` (weighted mean of ``||x - refit(codes)||^2`` over S), ``usage_entropy``
    (mean over sub-spaces of the usage entropy / ln K over R) and ``distinct_code_fraction``
    (distinct code tuples / rows of R).
  """
  codebooks = refit_codebooks(probe.refit_x, refit_codes, probe.refit_w, codebook_size)
  num_subspaces = codebooks.shape[0]
  recon = codebooks[np.arange(num_subspaces)[None], eval_codes.astype(np.int64)]
  err = ((recon.reshape(probe.eval_x.shape) - probe.eval_x) ** 2).sum(1)
  tuples = np.unique(np.ascontiguousarray(refit_codes), axis=0).shape[0]
  return {
    "shipped_error": float(np.average(err, weights=np.maximum(probe.eval_w, 0) + 1e-30)),
    "usage_entropy": float(np.mean(pq.usage_entropy(refit_codes, codebook_size))),
    "distinct_code_fraction": tuples / max(refit_codes.shape[0], 1),
  }


def improves(
  candidate: dict[str, float],
  kept: dict[str, float],
  start_error: float,
  rule: str,
  tolerance: float = 0.0,
) -> bool:
  """Whether an epoch's `shipped_metrics` should replace those of the epoch kept so far.

  Args:
    candidate, kept: ``shipped_metrics`` of the new epoch and of the kept one.
    start_error: held-out shipped error of the k-means start (epoch 0).
    rule: ``"error"``: a lower ``shipped_error``. ``"balance"``: a shipped error of at most
      ``(1 + tolerance) * start_error`` and a higher ``usage_entropy`` (at equal entropy, a lower
      error), so the kept epoch is never worse than the start beyond the tolerance.
    tolerance: relative error above the start that ``"balance"`` accepts.
  """
  error, entropy = candidate["shipped_error"], candidate["usage_entropy"]
  if rule == "error":
    return error < kept["shipped_error"]
  if rule != "balance":
    raise ValueError(f"selection rule must be 'balance' or 'error', got {rule!r}")
  if not error <= (1.0 + tolerance) * start_error:
    return False
  if entropy != kept["usage_entropy"]:
    return entropy > kept["usage_entropy"]
  return error < kept["shipped_error"]
