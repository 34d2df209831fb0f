"""Byte budgets the methods share (``compress.target_ratio``; DESIGN §10).

With ``compress.target_ratio = r`` the embedding bytes of the compressed fields are at most
``full / r`` (bit-packed, as `mec_jax.memory` counts them): hash gives every field ``V_f / r``
rows; QR fills each field's share (fields whose ``2 sqrt(V)`` floor exceeds it get the floor, the
rest is shared out again); PQ tries up to ``compress.pq_candidates`` settings (M, K) within
the budget, the most bytes first (`pq_candidates`; ``pq`` keeps the best on validation); CCE and
ROBE-Z split the bytes in proportion to ``V_f`` and take the most clusters (`plan_cce`) or array
floats (`plan_robez`) within each share. With ``r = 0`` PQ keeps ``quantize.*`` and the others
take the bytes that PQ setting uses.
int8/int4 have fixed ratios and ignore ``r``.
"""

from __future__ import annotations

import math

from absl import logging

from mec_jax.compression.table import packed_nbytes
from mec_jax.errors import BudgetError
from mec_jax.methods.base import compressed_fields

FLOAT_BYTES = 4
MIN_CCE_CLUSTERS = 2  # pointers of at least one bit (`compression.table.code_dtype`)


def pq_bytes(vocab_sizes: list[int], dim: int, num_subspaces: int, codebook_size: int) -> int:
  """Bit-packed embedding bytes of PQ with (M, K) over fields of these vocabularies."""
  codebooks = codebook_size * dim * FLOAT_BYTES
  return sum(packed_nbytes(v, num_subspaces, codebook_size) + codebooks for v in vocab_sizes)


def budget_bytes(config, feature_map) -> int:
  """Embedding bytes the compressed fields may take under ``compress.target_ratio``."""
  vocabs = [f.vocab_size for f in compressed_fields(config, feature_map)]
  dim = config.model.embed_dim
  if config.compress.target_ratio > 0:
    return int(sum(vocabs) * dim * 4 / config.compress.target_ratio)
  q = config.quantize
  return pq_bytes(vocabs, dim, q.num_subspaces, q.codebook_size)


def _pq_grid(dim: int):
  """``(M, K)`` settings PQ may take: M divides ``dim`` with sub-dimension >= 4 (>= 1 for tiny
  dims), K a power of two in ``[2, 256]`` (uint8 codes)."""
  min_sub = 4 if dim >= 8 else 1
  for m in (m for m in range(1, dim + 1) if dim % m == 0 and dim // m >= min_sub):
    for k in (2**b for b in range(1, 9)):
      yield m, k


def plan_pq(vocab_sizes: list[int], dim: int, budget: int) -> tuple[int, int]:
  """``(M, K)`` using the most bytes within ``budget`` (ties: larger K), over `_pq_grid`."""
  best = None
  for m, k in _pq_grid(dim):
    size = pq_bytes(vocab_sizes, dim, m, k)
    if size <= budget and (best is None or (size, k) > best[0]):
      best = ((size, k), (m, k))
  if best is None:
    raise BudgetError(
      f"config.compress.target_ratio: a budget of {budget} bytes is below the smallest PQ "
      f"setting for vocabularies {vocab_sizes} at dim {dim}"
    )
  return best[1]


def pq_candidates(
  vocab_sizes: list[int], dim: int, budget: int, count: int
) -> list[tuple[int, int]]:
  """At most ``count`` settings ``(M, K)`` within ``budget``, in the order stage B tries them.

  One per M of `_pq_grid`: its largest K that fits; ranked by bytes, then K, both descending
  (bench/pq_shapes.py measured this order against code capacity ``M log2 K``). The first is
  `plan_pq`'s (its tie rule too), so ``count = 1`` is the most-bytes rule.

  Raises:
    BudgetError: no setting fits (as `plan_pq`).
  """
  plan_pq(vocab_sizes, dim, budget)  # BudgetError when no setting fits
  largest: dict[int, int] = {}
  for m, k in _pq_grid(dim):
    if pq_bytes(vocab_sizes, dim, m, k) <= budget:
      largest[m] = max(k, largest.get(m, 0))
  ranked = sorted(
    largest.items(), key=lambda mk: (pq_bytes(vocab_sizes, dim, *mk), mk[1]), reverse=True
  )
  return ranked[:count]


def pq_shapes(config, feature_map) -> list[tuple[int, int]]:
  """The ``(M, K)`` settings stage B of ``pq`` tries: `pq_candidates` within the byte budget
  (``compress.pq_candidates`` of them), or ``quantize.*``'s alone without a target ratio."""
  if config.compress.target_ratio <= 0:
    return [(config.quantize.num_subspaces, config.quantize.codebook_size)]
  vocabs = [f.vocab_size for f in compressed_fields(config, feature_map)]
  budget = budget_bytes(config, feature_map)
  return pq_candidates(vocabs, config.model.embed_dim, budget, config.compress.pq_candidates)


def with_pq_shape(config, shape: tuple[int, int]):
  """A copy of ``config`` with ``quantize.num_subspaces, codebook_size = shape``."""
  out = config.copy_and_resolve_references()
  with out.unlocked():
    out.quantize.num_subspaces, out.quantize.codebook_size = shape
  return out


def pq_config(config, feature_map):
  """``config`` with ``quantize.num_subspaces/codebook_size`` from the budget (when one is set):
  `plan_pq`'s setting, the first of `pq_shapes`."""
  if config.compress.target_ratio <= 0:
    return config
  vocabs = [f.vocab_size for f in compressed_fields(config, feature_map)]
  m, k = plan_pq(vocabs, config.model.embed_dim, budget_bytes(config, feature_map))
  logging.info("compress: pq at target ratio %g -> M=%d, K=%d", config.compress.target_ratio, m, k)
  return with_pq_shape(config, (m, k))


def _qr_min_rows(vocab: int) -> tuple[int, int]:
  """``(fewest rows ceil(V/c) + c over c, that c)``."""
  root = max(1, math.isqrt(vocab))
  return min((math.ceil(vocab / c) + c, c) for c in range(max(1, root - 1), root + 3))


def plan_qr(vocab_sizes: list[int], budget_rows: int) -> list[int]:
  """Collisions ``c_f`` per field with ``sum_f ceil(V_f / c_f) + c_f <= budget_rows``.

  Rows are shared in proportion to ``V_f``; a field whose share is below its floor gets the
  floor and the others share the rest (water filling). Each field then takes the smallest c
  that fits its share.
  """
  floors = [_qr_min_rows(v) for v in vocab_sizes]
  if sum(f[0] for f in floors) > budget_rows:
    raise BudgetError(
      f"config.compress.target_ratio: QR needs at least {sum(f[0] for f in floors)} rows for "
      f"vocabularies {vocab_sizes} (2 sqrt(V) each), the budget allows {budget_rows}"
    )
  fixed: dict[int, int] = {}
  while True:
    free = [i for i in range(len(vocab_sizes)) if i not in fixed]
    left = budget_rows - sum(fixed.values())
    total = sum(vocab_sizes[i] for i in free)
    shares = {i: left * vocab_sizes[i] / total for i in free}
    short = {i: floors[i][0] for i in free if shares[i] < floors[i][0]}
    if not short:
      break
    fixed |= short
  out = []
  for i, vocab in enumerate(vocab_sizes):
    share = fixed.get(i, shares.get(i, 0))
    low, high = 1, floors[i][1]  # rows(c) decreases on [1, c_min]: smallest c within the share
    while low < high:
      mid = (low + high) // 2
      low, high = (low, mid) if math.ceil(vocab / mid) + mid <= share else (mid + 1, high)
    out.append(low)
  return out


def _shares(vocab_sizes: list[int], budget: int) -> list[int]:
  """Bytes of each field: ``budget`` split in proportion to the vocabularies (rounded down)."""
  total = sum(vocab_sizes)
  return [budget * v // total for v in vocab_sizes]


def cce_bytes(vocab: int, dim: int, num_columns: int, num_clusters: int) -> int:
  """Bit-packed bytes of CCE: two ``[c, k, d/c]`` float32 tables and ``V c`` pointers."""
  return 2 * num_clusters * dim * FLOAT_BYTES + packed_nbytes(vocab, num_columns, num_clusters)


def plan_cce(vocab_sizes: list[int], dim: int, num_columns: int, budget: int) -> list[int]:
  """Clusters ``k_f`` per field: the most (``<= V_f``) whose CCE bytes fit the field's share.

  Raises:
    BudgetError: a share below two clusters per column (one cluster gives every id the same
      clustered row and no pointer bits: not CCE).
  """
  out = []
  for vocab, share in zip(vocab_sizes, _shares(vocab_sizes, budget), strict=True):
    low, high = 0, vocab  # cce_bytes grows with k: the largest k within the share
    while low < high:
      mid = (low + high + 1) // 2
      low, high = (
        (mid, high) if cce_bytes(vocab, dim, num_columns, mid) <= share else (low, mid - 1)
      )
    if low < MIN_CCE_CLUSTERS:
      raise BudgetError(
        f"config.compress.target_ratio: a share of {share} bytes for a field of {vocab} ids is "
        f"below CCE's smallest ({cce_bytes(vocab, dim, num_columns, MIN_CCE_CLUSTERS)} bytes at "
        f"dim {dim}: {MIN_CCE_CLUSTERS} clusters a column)"
      )
    out.append(low)
  return out


def plan_robez(vocab_sizes: list[int], budget: int) -> list[int]:
  """Shared-array floats ``B_f`` per field: the field's share of ``budget`` (``>= 1``)."""
  sizes = [share // FLOAT_BYTES for share in _shares(vocab_sizes, budget)]
  if min(sizes, default=1) < 1:
    raise BudgetError(
      f"config.compress.target_ratio: a budget of {budget} bytes leaves a ROBE array of 0 floats"
    )
  return sizes
