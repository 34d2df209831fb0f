"""Popularity-split PQ: the most frequent ids keep their own rows, every other id gets PQ codes.

A field of ``V`` ids is split into a **head** of ``H`` ids (the most frequent in the train split)
and a **tail** of ``V - H``. A head id reads its own float32 row; a tail id reads the PQ
reconstruction ``concat_m codebooks[m, codes[t, m]]`` of its tail index ``t``::

  embed(v) = head_rows[slot(v)]                           if v is a head id
           = concat_m codebooks[m, codes[v - #head ids below v, m]]   otherwise

Which ids are the head: ``head_ids`` (sorted) or, when it is None, the ids ``0..H-1``. mec_jax's
vocabularies are ordered by descending train count (`mec_jax.data.encode.frequency_ids`), so the
head is usually that prefix and costs no bytes to find; otherwise the sorted ids are stored (and
counted, at ``ceil(log2 V)`` bits each bit-packed) and an id finds its slot by binary search.

Bytes (embedding): ``H d`` float32 head rows, the head ids (0 for the prefix), ``(V - H) M``
codes (``ceil(log2 K)`` bits packed, or the smallest unsigned dtype stored) and ``M K s`` float32
codebooks. First-order: ``H`` float32 head weights plus ``M K`` float32 tail codebook entries.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.compression.table import bits_per_code, code_dtype, packed_nbytes, usage_entropy
from mec_jax.ids import host_ids
from mec_jax.layers.base import lookup_ids
from mec_jax.layers.codebook import Codes
from mec_jax.ops import take_rows

FLOAT_BYTES = 4


@dataclasses.dataclass
class PQHeadTable:
  """Stage-B artifact of popularity-split PQ for one field.

  Attributes:
    head_rows: float32 ``[H, d]`` rows of the head ids (``H`` may be 0).
    head_ids: sorted int ``[H]`` ids of the head, or None for the ids ``0..H-1``.
    codes: unsigned ``[V - H, M]`` codes of the tail ids, in id order.
    codebooks: float32 ``[M, K, s]`` with ``M s = d``.
    head_first_order: float32 ``[H]`` first-order weights of the head ids, or None.
    first_order: float32 ``[M, K]`` first-order codebook of the tail, or None.
    name: field name.
    head_fraction: the fraction of the field's byte share given to the head.
    stats: JSON-able diagnostics (selection scores, stage-B seconds, ...).
  """

  head_rows: np.ndarray
  head_ids: np.ndarray | None
  codes: np.ndarray
  codebooks: np.ndarray
  head_first_order: np.ndarray | None = None
  first_order: np.ndarray | None = None
  name: str = ""
  head_fraction: float = 0.0
  stats: dict | None = None
  method = "pq_head"

  def __post_init__(self):
    self.head_rows = np.asarray(self.head_rows, np.float32)
    self.codebooks = np.asarray(self.codebooks, np.float32)
    if self.codebooks.ndim != 3 or self.head_rows.ndim != 2:
      raise ValueError(
        f"table {self.name!r}: head_rows {self.head_rows.shape} and codebooks "
        f"{self.codebooks.shape}; expected [H, d] and [M, K, s]"
      )
    m, k, s = self.codebooks.shape
    if self.head_rows.shape[1] != m * s:
      raise ValueError(
        f"table {self.name!r}: head rows of dim {self.head_rows.shape[1]} != {m * s}"
      )
    codes = np.asarray(self.codes)
    if codes.ndim != 2 or codes.shape[1] != m or not len(codes):
      raise ValueError(f"table {self.name!r}: codes {codes.shape}; expected [V - H >= 1, {m}]")
    if codes.min() < 0 or codes.max() >= k:
      raise ValueError(f"table {self.name!r}: codes must lie in [0, {k})")
    self.codes = codes.astype(code_dtype(k))
    if self.head_ids is not None:
      ids = np.asarray(self.head_ids, np.int64)
      vocab = len(ids) + len(codes)
      if ids.shape != (len(self.head_rows),) or (
        len(ids) and (np.any(np.diff(ids) <= 0) or ids[0] < 0 or ids[-1] >= vocab)
      ):
        raise ValueError(
          f"table {self.name!r}: head_ids must be {len(self.head_rows)} increasing ids in "
          f"[0, {vocab})"
        )
      # no head ids (H = 0) or the ids 0..H-1: the prefix, nothing stored
      prefix = np.array_equal(ids, np.arange(len(ids)))
      self.head_ids = None if prefix else ids.astype(np.int32)
    for name, shape in (("head_first_order", (self.num_head,)), ("first_order", (m, k))):
      value = getattr(self, name)
      if value is not None:
        value = np.asarray(value, np.float32)
        if value.shape != shape:
          raise ValueError(f"table {self.name!r}: {name} {value.shape}, expected {shape}")
        setattr(self, name, value)
    self.stats = dict(self.stats or {})

  @property
  def num_head(self) -> int:
    return int(self.head_rows.shape[0])

  @property
  def vocab_size(self) -> int:
    return self.num_head + int(self.codes.shape[0])

  @property
  def dim(self) -> int:
    return int(self.head_rows.shape[1])

  @property
  def num_subspaces(self) -> int:
    return int(self.codebooks.shape[0])

  @property
  def codebook_size(self) -> int:
    return int(self.codebooks.shape[1])

  def head_map_nbytes(self, packed: bool = True) -> int:
    """Bytes that tell which ids are the head: 0 for the prefix ``0..H-1``, else the ids."""
    if self.head_ids is None:
      return 0
    if packed:
      return packed_nbytes(self.num_head, 1, max(2, self.vocab_size))
    return int(self.head_ids.nbytes)

  def nbytes(self, packed: bool = True) -> int:
    """Head rows + head ids + tail codes (bit-packed or as stored) + codebooks."""
    tail = len(self.codes)
    codes = packed_nbytes(tail, self.num_subspaces, self.codebook_size) if packed else None
    codes = self.codes.nbytes if codes is None else codes
    return int(
      self.head_rows.size * FLOAT_BYTES
      + self.head_map_nbytes(packed)
      + codes
      + self.codebooks.size * FLOAT_BYTES
    )

  def first_order_nbytes(self) -> int:
    """One float32 per head id plus one per code per sub-space (``[M, K]``)."""
    return (self.num_head + self.num_subspaces * self.codebook_size) * FLOAT_BYTES

  def knobs(self) -> dict:
    head_bytes = self.head_rows.size * FLOAT_BYTES + self.head_map_nbytes()
    out = {
      "head_fraction": self.head_fraction,
      "head_rows": self.num_head,
      "head_map": "prefix" if self.head_ids is None else "sorted_ids",
      "head_bytes": int(head_bytes),
      "tail_rows": int(len(self.codes)),
      "num_subspaces": self.num_subspaces,
      "codebook_size": self.codebook_size,
      "tail_bytes": int(self.nbytes() - head_bytes),
      "code_usage_entropy": float(np.mean(usage_entropy(self.codes, self.codebook_size))),
      "bits_per_head_id": 0 if self.head_ids is None else bits_per_code(self.vocab_size),
    }
    return out | {k: v for k, v in self.stats.items() if isinstance(v, (int, float, str, dict))}

  def slots(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(is_head [...] bool, position [...])``: head slot for head ids, tail index otherwise."""
    return _slots(np, ids, self.head_ids, self.num_head)

  def lookup(self, ids) -> np.ndarray:
    """numpy reference of `PQHeadEmbed`: float32 ``[..., d]`` rows of int ``ids [...]``
    (out-of-range ids read the OOV id ``V - 1``)."""
    ids = host_ids(ids, self.vocab_size, self.vocab_size - 1, f"table {self.name!r}")
    is_head, pos = self.slots(ids.astype(np.int64))
    m = np.arange(self.num_subspaces)
    tail = self.codebooks[m, self.codes[np.minimum(pos, len(self.codes) - 1)].astype(np.int64)]
    tail = tail.reshape(*ids.shape, self.dim)
    if not self.num_head:
      return tail
    head = self.head_rows[np.minimum(pos, self.num_head - 1)]
    return np.where(is_head[..., None], head, tail)

  def to_layer(self, *, rngs: nnx.Rngs, first_order: bool = True) -> PQHeadEmbed:
    del rngs
    return PQHeadEmbed(
      self.head_rows,
      self.head_ids,
      self.codes,
      self.codebooks,
      head_first_order=self.head_first_order,
      first_order_codebook=self.first_order,
      first_order=first_order,
    )


def _slots(xp, ids, head_ids, num_head: int):
  """``(is_head, position)`` of in-range ``ids``: position is the head slot of a head id and the
  tail index ``id - #(head ids < id)`` of any other (``xp``: numpy or jax.numpy)."""
  if head_ids is None:  # the head is the prefix 0..H-1
    return ids < num_head, xp.where(ids < num_head, ids, ids - num_head)
  below = xp.searchsorted(head_ids, ids)  # head ids < id
  found = head_ids[xp.minimum(below, max(num_head - 1, 0))] == ids if num_head else ids < 0
  return found, xp.where(found, below, ids - below)


class PQHeadEmbed(nnx.Module):
  """Head rows plus a PQ tail; satisfies the `Table` interface of `mec_jax.layers.base`.

  Trainable: ``pqh_head_rows`` ``[H, d]``, ``pqh_codebooks`` ``[M, K, s]`` and the first-order
  ``pqh_head_first_order`` ``[H]`` / ``pqh_first_order`` ``[M, K]``. Head ids and codes are
  fixed (`Codes`). Every lookup goes through `mec_jax.ops.take_rows`, whose gradient is a
  contention-free segment sum, as in `CodebookEmbed`.

  Args:
    head_rows: float ``[H, d]``.
    head_ids: sorted int ``[H]`` or None (the ids ``0..H-1``).
    codes: int ``[V - H, M]`` in ``[0, K)``.
    codebooks: float ``[M, K, s]``.
    head_first_order, first_order_codebook: initial first-order weights (default zeros).
    first_order: hold first-order weights at all.
  """

  def __init__(
    self,
    head_rows,
    head_ids,
    codes,
    codebooks,
    *,
    head_first_order=None,
    first_order_codebook=None,
    first_order: bool = True,
  ):
    table = PQHeadTable(head_rows, head_ids, codes, codebooks, head_first_order, None)
    self.num_head, self.vocab_size, self.dim = table.num_head, table.vocab_size, table.dim
    self.num_subspaces, self.codebook_size = table.num_subspaces, table.codebook_size
    self.subspace_dim = self.dim // self.num_subspaces
    self.prefix = table.head_ids is None
    has_head = self.num_head > 0  # no zero-size variables: checkpoints refuse them
    self.head_ids = nnx.data(None if self.prefix else Codes(jnp.asarray(table.head_ids)))
    self.codes = Codes(jnp.asarray(table.codes))
    self.pqh_head_rows = nnx.data(nnx.Param(jnp.asarray(table.head_rows)) if has_head else None)
    self.pqh_codebooks = nnx.Param(jnp.asarray(table.codebooks))
    head_fo = fo = None
    if first_order:
      shape = (self.num_subspaces, self.codebook_size)
      hfo = np.zeros(self.num_head) if head_first_order is None else head_first_order
      cfo = np.zeros(shape) if first_order_codebook is None else first_order_codebook
      if np.shape(cfo) != shape or np.shape(hfo) != (self.num_head,):
        raise ValueError(
          f"PQHeadEmbed: first-order shapes {np.shape(hfo)} and {np.shape(cfo)}, expected "
          f"({self.num_head},) and {shape}"
        )
      head_fo = nnx.Param(jnp.asarray(hfo, jnp.float32)) if has_head else None
      fo = nnx.Param(jnp.asarray(cfo, jnp.float32))
    self.pqh_head_first_order = nnx.data(head_fo)
    self.pqh_first_order = nnx.data(fo)

  def _split(self, ids: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(is_head, head slot, flat codebook rows [..., M])`` of ``ids`` (OOV policy applied)."""
    ids = lookup_ids(ids, self.vocab_size, self.vocab_size - 1, "PQHeadEmbed")
    head_ids = None if self.prefix else self.head_ids[...]
    is_head, pos = _slots(jnp, ids, head_ids, self.num_head)
    tail = jnp.clip(pos, 0, self.vocab_size - self.num_head - 1)
    codes = self.codes[...][tail].astype(jnp.int32)
    rows = codes + self.codebook_size * jnp.arange(self.num_subspaces, dtype=jnp.int32)
    return is_head, jnp.clip(pos, 0, max(self.num_head - 1, 0)), rows

  def __call__(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [..., d]``: the head row of a head id, the PQ reconstruction otherwise."""
    is_head, slot, rows = self._split(ids)
    flat = self.pqh_codebooks[...].reshape(-1, self.subspace_dim)
    tail = take_rows(flat, rows).reshape(*rows.shape[:-1], self.dim)
    if not self.num_head:
      return tail
    head = take_rows(self.pqh_head_rows[...], slot)
    return jnp.where(is_head[..., None], head, tail)

  def first_order(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [...]`` (zeros without first-order weights)."""
    is_head, slot, rows = self._split(ids)
    if self.pqh_first_order is None:
      return jnp.zeros(is_head.shape, jnp.float32)
    tail = take_rows(self.pqh_first_order[...].reshape(-1), rows).sum(-1)
    if not self.num_head:
      return tail
    return jnp.where(is_head, take_rows(self.pqh_head_first_order[...], slot), tail)
