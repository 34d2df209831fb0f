"""Row-wise integer quantization of an embedding table: per-row scale and offset (TorchRec style).

Row ``v`` is stored as ``bits``-bit unsigned integers ``q[v, :]`` plus a per-row ``scale`` and
``offset`` (float16 or float32) and decoded as ``offset + scale * q``. The quantization is
asymmetric min/max: ``offset <= min(x_v)`` and ``offset + scale * (2**bits - 1) >= max(x_v)`` hold
for the *stored* (rounded) scale and offset, so every element lies inside the grid and the round
trip error is at most half a step, ``scale / 2`` (plus float32 rounding of the decode).

Bytes (`rowwise_nbytes`): ``V * d * bits / 8`` bit-packed (int4: two values per byte) or
``V * d`` as stored (one uint8 per value), plus ``V * 2 * itemsize(scale_dtype)``. At d=40 and
float16 scale/offset that is 44 bytes per row for int8 (3.6x vs float32) and 24 for int4 (6.7x).

References:
  TorchRec / FBGEMM ``FUSED_UINT8`` / ``FUSED_UINT4`` row-wise embedding quantization.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

BITS = (4, 8)
SCALE_DTYPES = ("float16", "float32")


def check_settings(bits: int, scale_dtype: str) -> None:
  """Raises ValueError unless ``bits`` is 4 or 8 and ``scale_dtype`` float16 or float32."""
  if bits not in BITS:
    raise ValueError(f"row-wise quantization: bits={bits}; expected one of {BITS}")
  if scale_dtype not in SCALE_DTYPES:
    raise ValueError(f"row-wise quantization: scale_dtype={scale_dtype!r}; expected {SCALE_DTYPES}")


def round_to(x: jax.Array, scale_dtype: str) -> jax.Array:
  """float32 values rounded to ``scale_dtype`` (what the stored scale/offset can represent)."""
  return jnp.asarray(x, jnp.float32).astype(scale_dtype).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("bits", "scale_dtype"))
def quantize_rows(
  x: jax.Array, bits: int, scale_dtype: str = "float16"
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-row min/max quantization of ``x [V, d]``.

  Args:
    x: float ``[V, d]``.
    bits: 4 or 8.
    scale_dtype: dtype the scale and offset are stored in (``float16`` or ``float32``).

  Returns:
    ``(q uint8 [V, d] in [0, 2**bits), scale float32 [V], offset float32 [V])``; scale and
    offset hold exactly representable ``scale_dtype`` values (returned as float32).
  """
  check_settings(bits, scale_dtype)
  x = jnp.asarray(x, jnp.float32)
  levels = 2**bits - 1
  low, high = x.min(axis=1), x.max(axis=1)
  offset = round_to(low, scale_dtype)
  offset = jnp.where(offset > low, jnp.nextafter(offset.astype(scale_dtype), -jnp.inf), offset)
  offset = offset.astype(jnp.float32)
  scale = round_to((high - offset) / levels, scale_dtype)
  short = offset + scale * levels < high  # rounding made the grid end below the row's max
  scale = jnp.where(short, jnp.nextafter(scale.astype(scale_dtype), jnp.inf), scale)
  scale = scale.astype(jnp.float32)
  safe = jnp.where(scale > 0, scale, 1.0)
  q = jnp.clip(jnp.round((x - offset[:, None]) / safe[:, None]), 0, levels)
  return q.astype(jnp.uint8), scale, offset


def dequantize_rows(q: jax.Array, scale: jax.Array, offset: jax.Array) -> jax.Array:
  """float32 ``[..., d]`` rows ``offset + scale * q`` for ``q [..., d]``, ``scale/offset [...]``."""
  return offset[..., None] + scale[..., None] * q.astype(jnp.float32)


def rowwise_nbytes(vocab_size: int, dim: int, bits: int, scale_dtype: str, packed: bool) -> int:
  """Bytes of one row-wise quantized table (values + per-row scale and offset)."""
  check_settings(bits, scale_dtype)
  values = math.ceil(vocab_size * dim * bits / 8) if packed else vocab_size * dim
  return int(values + vocab_size * 2 * np.dtype(scale_dtype).itemsize)


def pack_int4(q: np.ndarray) -> np.ndarray:
  """uint8 ``[V, ceil(d/2)]``: two 4-bit values per byte (low nibble first) of ``q [V, d]``."""
  q = np.asarray(q, np.uint8)
  if q.shape[1] % 2:
    q = np.pad(q, ((0, 0), (0, 1)))
  return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, dim: int) -> np.ndarray:
  """Inverse of `pack_int4`: uint8 ``[V, dim]``."""
  packed = np.asarray(packed, np.uint8)
  out = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(packed.shape[0], -1)
  return out[:, :dim]
