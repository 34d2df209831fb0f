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

from mec_jax.layers import base
from mec_jax.layers.base import lookup_ids
from mec_jax.layers.hashed import hash_ids
from mec_jax.ops import take_rows


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
class RobeTable(base.TableArtifact):
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
  knob_names = ("array_size", "num_blocks", "hash_seed")
  array_size = base.axis_size("array", 0)

  def positions(self) -> np.ndarray:
    """int32 ``[V, d]``: the array entry of every (id, dim)."""
    ids = np.arange(self.vocab_size)
    args = (self.vocab_size, self.array.size, self.dim, self.num_blocks, self.hash_seed)
    return np.asarray(robe_positions(ids, *args))

  def nbytes(self, packed: bool = True) -> int:
    del packed
    return self.array.size * base.FLOAT_BYTES

  def first_order_nbytes(self) -> int:
    return first_order_size(self.array.size, self.dim) * base.FLOAT_BYTES


def first_order_size(size: int, dim: int) -> int:
  """B1 = max(1, B / d): first-order floats at the compression of the embedding array."""
  return max(1, size // dim)


@base.layer_of(RobeTable)
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
    expected = (first_order_size(array.size, dim),)
    self.robe_first_order = base.first_order_param(first_order, expected, "RobeEmbed")

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
    size = first_order_size(self.robe_array[...].size, self.dim)
    rows = hash_ids(ids, size, self.hash_seed + self.num_blocks)
    return base.first_order_at(self.robe_first_order, rows)
