"""ROBE-Z: every row of a field is read from one shared 1-D array at hashed offsets.

With ``Z = num_blocks`` blocks of ``s = d / Z`` dims, block ``j`` of id ``v`` is the ``s``
consecutive entries of ``array`` starting at ``h_j(v)`` (wrapping around the end)::

  ROBE(v)[j s + t] = array[(h_j(v) + t) mod B],   h_j = hash_ids(., B, hash_seed + j)

Bytes: ``B`` float32, whatever the vocabulary. First-order weights (when the backbone has them)
are a second shared array of ``B1`` floats read at ``hash_ids(v, B1, hash_seed + Z)``.

References:
  Desai, Chou & Shrivastava, "Random Offset Block Embedding (ROBE) for compressed embedding tables
  in deep learning recommendation systems", MLSys 2022, arXiv 2108.02191.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.layers.base import lookup_ids
from mec_jax.layers.hashed import hash_ids
from mec_jax.ops import take_rows

FLOAT_BYTES = 4


def robe_positions(ids, vocab_size: int, size: int, dim: int, num_blocks: int, seed: int):
  """int32 ``[..., dim]``: the array entry each embedding dim of each id reads.

  Args:
    ids: int ``[...]`` (out-of-range ids read the OOV id ``vocab_size - 1``).
    vocab_size: V.
    size: B, entries of the shared array.
    dim: d, a multiple of ``num_blocks``.
    num_blocks: Z.
    seed: block ``j`` hashes with ``seed + j``.
  """
  ids = lookup_ids(ids, vocab_size, vocab_size - 1, "RobeEmbed")
  block = dim // num_blocks
  starts = jnp.stack([hash_ids(ids, size, seed + j) for j in range(num_blocks)], axis=-1)
  pos = starts[..., :, None] + jnp.arange(block, dtype=jnp.int32)  # [..., Z, s]
  return (pos % size).reshape(*ids.shape, dim)


@dataclasses.dataclass
class RobeTable:
  """Stage-B artifact of ROBE-Z for one field.

  Attributes:
    array: float32 ``[B]`` the shared parameters.
    first_order: float32 ``[B1]`` or None.
    vocab_size: V.
    dim: embedding size d.
    num_blocks: Z (divides d).
    hash_seed: block ``j`` hashes with ``hash_seed + j``.
    name: field name.
  """

  array: np.ndarray
  first_order: np.ndarray | None
  vocab_size: int
  dim: int
  num_blocks: int = 1
  hash_seed: int = 0
  name: str = ""
  method = "robez"

  def positions(self) -> np.ndarray:
    """int32 ``[V, d]``: the array entry of every (id, dim)."""
    ids = np.arange(self.vocab_size)
    args = (self.vocab_size, self.array.size, self.dim, self.num_blocks, self.hash_seed)
    return np.asarray(robe_positions(ids, *args))

  def nbytes(self, packed: bool = True) -> int:
    del packed
    return self.array.size * FLOAT_BYTES

  def first_order_nbytes(self) -> int:
    return first_order_size(self.array.size, self.dim) * FLOAT_BYTES

  def knobs(self) -> dict:
    return {
      "array_size": int(self.array.size),
      "num_blocks": self.num_blocks,
      "hash_seed": self.hash_seed,
    }

  def to_layer(self, *, rngs: nnx.Rngs, first_order: bool = True) -> RobeEmbed:
    del rngs
    return RobeEmbed(
      self.vocab_size,
      self.array,
      self.dim,
      num_blocks=self.num_blocks,
      first_order=self.first_order if first_order else None,
      hash_seed=self.hash_seed,
    )


def first_order_size(size: int, dim: int) -> int:
  """B1 = max(1, B / d): first-order floats at the compression of the embedding array."""
  return max(1, size // dim)


class RobeEmbed(nnx.Module):
  """ROBE-Z table; satisfies the `Table` interface of `mec_jax.layers.base`.

  Args:
    vocab_size: V.
    array: float ``[B]`` shared parameters (trainable, ``robe_array``).
    dim: d, a multiple of ``num_blocks``.
    num_blocks: Z.
    first_order: optional float ``[max(1, B // d)]`` (``robe_first_order``).
    hash_seed: as in `robe_positions`.
  """

  def __init__(
    self,
    vocab_size: int,
    array,
    dim: int,
    *,
    num_blocks: int = 1,
    first_order=None,
    hash_seed: int = 0,
  ):
    array = jnp.asarray(array, jnp.float32)
    if vocab_size < 1 or array.ndim != 1 or array.size < 1:
      raise ValueError(
        f"RobeEmbed: needs vocab_size >= 1 and array [B >= 1], got {vocab_size}, {array.shape}"
      )
    if num_blocks < 1 or dim % num_blocks:
      raise ValueError(f"RobeEmbed: num_blocks={num_blocks} must be >= 1 and divide dim={dim}")
    self.vocab_size, self.dim, self.num_blocks = int(vocab_size), int(dim), int(num_blocks)
    self.hash_seed = int(hash_seed)
    self.robe_array = nnx.Param(array)
    fo = None
    if first_order is not None:
      expected = (first_order_size(array.size, dim),)
      if np.shape(first_order) != expected:
        raise ValueError(
          f"RobeEmbed: first_order shape {np.shape(first_order)}, expected {expected}"
        )
      fo = nnx.Param(jnp.asarray(first_order, jnp.float32))
    self.robe_first_order = nnx.data(fo)

  def __call__(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [..., dim]``."""
    array = self.robe_array[...]
    pos = robe_positions(
      ids, self.vocab_size, array.size, self.dim, self.num_blocks, self.hash_seed
    )
    return take_rows(array, pos)

  def first_order(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [...]`` (zeros without first-order weights)."""
    ids = lookup_ids(ids, self.vocab_size, self.vocab_size - 1, "RobeEmbed")
    if self.robe_first_order is None:
      return jnp.zeros(ids.shape, jnp.float32)
    fo = self.robe_first_order[...]
    return take_rows(fo, hash_ids(ids, fo.size, self.hash_seed + self.num_blocks))
