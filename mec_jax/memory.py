"""Memory accounting of embedding tables, full vs compressed (DESIGN §4).

Per field: ``full = V * d * 4`` bytes; compressed = what the field's artifact counts
(`mec_jax.methods.base.Artifact`: ``nbytes(packed)``, bit-packed or as stored, e.g. PQ codes +
float32 codebooks, hash rows, QR tables, int8/int4 values + per-row scale and offset).
Uncompressed fields count their full table on both sides. The whole-model figures add the
first-order (LR) tables (when the backbone has them: ``uses_first_order``) and the dense layers,
which are the same on both sides.
"""

from __future__ import annotations

import dataclasses

FLOAT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class FieldMemory:
  """Bytes of one field's tables; ``method`` is empty for a field kept as a full table.

  Attributes:
    name, vocab_size, dim: the field and its rows.
    method: the `compress.method` of its artifact, or "" (full table).
    packed_bytes, stored_bytes: the artifact's embedding bytes (0 for a full table).
    compressed_first_order_bytes: the artifact's first-order bytes (0 for a full table).
  """

  name: str
  vocab_size: int
  dim: int
  method: str = ""
  packed_bytes: int = 0
  stored_bytes: int = 0
  compressed_first_order_bytes: int = 0

  @property
  def compressed(self) -> bool:
    return bool(self.method)

  def full_bytes(self) -> int:
    return self.vocab_size * self.dim * FLOAT_BYTES

  def compressed_bytes(self, packed: bool) -> int:
    if not self.compressed:
      return self.full_bytes()
    return self.packed_bytes if packed else self.stored_bytes

  def first_order_bytes(self, compressed: bool) -> int:
    """Bytes of the field's first-order (LR) weights, full or as its artifact counts them."""
    if compressed and self.compressed:
      return self.compressed_first_order_bytes
    return self.vocab_size * FLOAT_BYTES


def field_memories(
  names: list[str], vocab_sizes: list[int], dim: int, tables: dict
) -> list[FieldMemory]:
  """One `FieldMemory` per field; ``tables`` maps compressed fields to their stage-B artifact
  (anything with ``method``, ``vocab_size``, ``dim``, ``nbytes(packed)`` and
  ``first_order_nbytes()``, as `mec_jax.methods.base.Artifact` declares)."""
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
    out.append(
      FieldMemory(
        name,
        vocab,
        dim,
        method=table.method,
        packed_bytes=table.nbytes(packed=True),
        stored_bytes=table.nbytes(packed=False),
        compressed_first_order_bytes=table.first_order_nbytes(),
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
