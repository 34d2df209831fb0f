"""Memory accounting of embedding tables, full vs compressed (DESIGN §4).

Per field: ``full = V * d * 4`` bytes; compressed = codes (bit-packed, or as stored) + float32
codebooks for PQ, or what the baseline's artifact counts (``nbytes(packed)``: hash rows, QR
tables, int8/int4 values + per-row scale and offset, see `mec_jax.methods`). Uncompressed fields
count their full table on both sides. The whole-model figures add first-order (LR) tables and the
dense layers, which are the same on both sides.
"""

from __future__ import annotations

import dataclasses
import math

from mec_jax.compression.table import CompressedTable, bits_per_code, code_dtype

FLOAT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class FieldMemory:
  """Bytes of one field's tables; ``compressed`` is None for a field kept as a full table."""

  name: str
  vocab_size: int
  dim: int
  num_subspaces: int = 0
  codebook_size: int = 0
  method: str = ""  # "" (full table), "pq", or a baseline of mec_jax.methods
  # Bytes of a baseline (method not "pq"), taken from its artifact.
  packed_bytes: int = 0
  stored_bytes: int = 0
  baseline_first_order_bytes: int = 0

  @property
  def compressed(self) -> bool:
    return self.num_subspaces > 0 or bool(self.method)

  @property
  def baseline(self) -> bool:
    return bool(self.method) and self.method != "pq"

  def full_bytes(self) -> int:
    return self.vocab_size * self.dim * FLOAT_BYTES

  def code_bytes(self, packed: bool) -> int:
    if not self.compressed:
      return 0
    if packed:
      return math.ceil(self.vocab_size * self.num_subspaces * bits_per_code(self.codebook_size) / 8)
    return self.vocab_size * self.num_subspaces * code_dtype(self.codebook_size).itemsize

  def compressed_bytes(self, packed: bool) -> int:
    if not self.compressed:
      return self.full_bytes()
    if self.baseline:
      return self.packed_bytes if packed else self.stored_bytes
    return self.code_bytes(packed) + self.codebook_size * self.dim * FLOAT_BYTES

  def first_order_bytes(self, compressed: bool) -> int:
    """Bytes of the field's first-order (LR) weights; compressed ones share the field's codes."""
    if compressed and self.baseline:
      return self.baseline_first_order_bytes
    if compressed and self.compressed:
      return self.num_subspaces * self.codebook_size * FLOAT_BYTES
    return self.vocab_size * FLOAT_BYTES


def field_memories(
  names: list[str], vocab_sizes: list[int], dim: int, tables: dict
) -> list[FieldMemory]:
  """One `FieldMemory` per field; ``tables`` maps compressed fields to their stage-B artifact.

  An artifact is a `CompressedTable` (PQ) or a baseline's (``method``, ``vocab_size``, ``dim``,
  ``nbytes(packed)``, ``first_order_nbytes()``; `mec_jax.methods`).
  """
  out = []
  for name, vocab in zip(names, vocab_sizes, strict=True):
    table = tables.get(name)
    if table is None:
      out.append(FieldMemory(name, vocab, dim))
      continue
    if table.vocab_size != vocab or table.dim != dim:
      raise ValueError(
        f"field {name!r}: compressed table is [{table.vocab_size}, {table.dim}], "
        f"but the model expects [{vocab}, {dim}]"
      )
    if isinstance(table, CompressedTable):
      out.append(FieldMemory(name, vocab, dim, table.num_subspaces, table.codebook_size, "pq"))
    else:
      out.append(
        FieldMemory(
          name,
          vocab,
          dim,
          method=table.method,
          packed_bytes=table.nbytes(packed=True),
          stored_bytes=table.nbytes(packed=False),
          baseline_first_order_bytes=table.first_order_nbytes(),
        )
      )
  return out


def _summary(full: int, packed: int, stored: int) -> dict:
  return {
    "full_bytes": int(full),
    "compressed_bytes_packed": int(packed),
    "compressed_bytes_stored": int(stored),
    "ratio_packed": full / packed if packed else float("nan"),
    "ratio_stored": full / stored if stored else float("nan"),
  }


def _sum(fields: list[FieldMemory]) -> dict:
  return _summary(
    sum(f.full_bytes() for f in fields),
    sum(f.compressed_bytes(True) for f in fields),
    sum(f.compressed_bytes(False) for f in fields),
  )


def memory_report(fields: list[FieldMemory], *, first_order: bool, dense_param_count: int) -> dict:
  """The ``memory`` section of report.json.

  Args:
    fields: one entry per field, in model order.
    first_order: whether the backbone has first-order (LR) weights per id.
    dense_param_count: number of float32 parameters outside the embedding tables.
  """
  report = _sum(fields)
  report["compressed_fields_only"] = _sum([f for f in fields if f.compressed])
  dense = dense_param_count * FLOAT_BYTES
  lr_full = sum(f.first_order_bytes(False) for f in fields) if first_order else 0
  lr_comp = sum(f.first_order_bytes(True) for f in fields) if first_order else 0
  report["whole_model"] = _summary(
    report["full_bytes"] + lr_full + dense,
    report["compressed_bytes_packed"] + lr_comp + dense,
    report["compressed_bytes_stored"] + lr_comp + dense,
  )
  report["per_field"] = {
    f.name: {
      "vocab_size": f.vocab_size,
      "compressed": f.compressed,
      "method": f.method or "full",
      **_summary(f.full_bytes(), f.compressed_bytes(True), f.compressed_bytes(False)),
    }
    for f in fields
  }
  return report
