"""Row-wise int8 / int4 post-training quantized tables (`mec_jax.compression.rowwise`).

Stage C decision: the integer values are frozen state (`QuantizedValues`, not an ``nnx.Param``)
and the per-row ``row_scale`` / ``row_offset`` are the trainable parameters, the analogue of PQ's
codebooks. The forward pass rounds them to the stored dtype (float16 by default) with a
straight-through estimator, so what is trained and evaluated is exactly what the accounting
counts. First-order (LR) weights stay float32 per id (``rowwise_first_order``), counted as such.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.compression.rowwise import (
  check_settings,
  dequantize_rows,
  round_to,
  rowwise_nbytes,
)
from mec_jax.layers import base
from mec_jax.layers.base import lookup_ids
from mec_jax.ops import take_rows


class QuantizedValues(nnx.Variable):
  """uint8 ``[vocab_size, dim]`` quantized values: carried and saved, never trained."""


@dataclasses.dataclass
class RowwiseTable(base.TableArtifact):
  """Stage-B artifact of row-wise quantization for one field.

  Attributes:
    values: uint8 ``[V, dim]`` in ``[0, 2**bits)`` (unpacked; `pack_int4` packs int4 on disk).
    scale, offset: float32 ``[V]`` holding ``scale_dtype``-representable values.
    first_order: float32 ``[V]`` or None.
    bits: 8 or 4.
    scale_dtype: ``float16`` or ``float32``.
    name: field name.
  """

  values: np.ndarray
  scale: np.ndarray
  offset: np.ndarray
  first_order: np.ndarray | None
  bits: int = 8
  scale_dtype: str = "float16"
  name: str = ""

  def __post_init__(self):
    check_settings(self.bits, self.scale_dtype)

  @property
  def method(self) -> str:
    return f"int{self.bits}"

  knob_names = ("bits", "scale_dtype")
  vocab_size = base.axis_size("values", 0)
  dim = base.axis_size("values", 1)

  def reconstruct(self) -> np.ndarray:
    return np.asarray(dequantize_rows(self.values, self.scale, self.offset))

  def nbytes(self, packed: bool = True) -> int:
    return rowwise_nbytes(self.vocab_size, self.dim, self.bits, self.scale_dtype, packed)

  def first_order_nbytes(self) -> int:
    return self.vocab_size * base.FLOAT_BYTES


@base.layer_of(RowwiseTable)
class RowwiseQuantEmbed(nnx.Module):
  """Row-wise quantized table; satisfies the `Table` interface of `mec_jax.layers.base`.

  Args:
    values: uint8 ``[V, dim]`` quantized values (out-of-range ids read the OOV row ``V - 1``,
      the id policy of `mec_jax.layers.base`).
    scale, offset: float ``[V]`` per-row scale and offset.
    bits: 8 or 4 (checks ``values``).
    scale_dtype: dtype the scale and offset are rounded to in the forward pass.
    first_order: optional float ``[V]`` first-order weights.
  """

  def __init__(
    self,
    values: np.ndarray | jax.Array,
    scale: np.ndarray | jax.Array,
    offset: np.ndarray | jax.Array,
    *,
    bits: int = 8,
    scale_dtype: str = "float16",
    first_order: np.ndarray | jax.Array | None = None,
  ):
    check_settings(bits, scale_dtype)
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[0] < 1:
      raise ValueError(f"RowwiseQuantEmbed: values must be [V, dim], got {values.shape}")
    if values.size and int(values.max()) >= 2**bits:
      raise ValueError(f"RowwiseQuantEmbed: values reach {values.max()}, beyond int{bits}")
    self.vocab_size, self.dim = (int(n) for n in values.shape)
    for name, arr in (("scale", scale), ("offset", offset)):
      if arr is not None and np.shape(arr) != (self.vocab_size,):
        raise ValueError(
          f"RowwiseQuantEmbed: {name} shape {np.shape(arr)}, expected ({self.vocab_size},)"
        )
    self.bits = int(bits)
    self.scale_dtype = scale_dtype
    self.values = QuantizedValues(jnp.asarray(values, jnp.uint8))
    self.row_scale = nnx.Param(jnp.asarray(scale, jnp.float32))
    self.row_offset = nnx.Param(jnp.asarray(offset, jnp.float32))
    self.rowwise_first_order = base.first_order_param(
      first_order, (self.vocab_size,), "RowwiseQuantEmbed"
    )

  def _ids(self, ids: jax.Array) -> jax.Array:
    return lookup_ids(ids, self.vocab_size, self.vocab_size - 1, "RowwiseQuantEmbed")

  def _stored(self, param: nnx.Param) -> jax.Array:
    x = param[...]
    return x + jax.lax.stop_gradient(round_to(x, self.scale_dtype) - x)

  def __call__(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [..., dim]``: ``offset + scale * values`` of each id's row."""
    ids = self._ids(ids)
    scale = take_rows(self._stored(self.row_scale), ids)
    offset = take_rows(self._stored(self.row_offset), ids)
    return dequantize_rows(self.values[...][ids], scale, offset)

  def first_order(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [...]`` (zeros without first-order weights)."""
    return base.first_order_at(self.rowwise_first_order, self._ids(ids))
