"""The hashing trick: ids of one field share a table of ``num_buckets`` rows through a hash.

``HashedEmbed(ids) = rows[hash(id) mod B]``. Two hash functions:

* ``universal`` (default): a seeded multiply-xorshift mix of the 32-bit id, then ``mod B``. Ids in
  mec_jax are sorted by train frequency, so this is what hashing the raw feature values gives:
  popular and rare values collide at random.
* ``mod``: ``id mod B``. With frequency-sorted ids the B most popular values get buckets of their
  own; a (favourable) variant users can compare against.

References:
  Weinberger et al., "Feature Hashing for Large Scale Multitask Learning", ICML 2009.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.layers import base
from mec_jax.layers.base import lookup_ids
from mec_jax.ops import take_rows

HASH_FUNCTIONS = ("universal", "mod")


def hash_ids(ids: jax.Array, num_buckets: int, seed: int = 0, function: str = "universal"):
  """int32 buckets in ``[0, num_buckets)`` of int ``ids [...]``; deterministic in ``seed``.

  Args:
    ids: non-negative integer ids.
    num_buckets: B >= 1.
    seed: selects the universal hash (ignored by ``mod``).
    function: ``universal`` or ``mod``.
  """
  if function not in HASH_FUNCTIONS:
    raise ValueError(f"hash_ids: function={function!r}; expected one of {HASH_FUNCTIONS}")
  if num_buckets < 1:
    raise ValueError(f"hash_ids: num_buckets must be >= 1, got {num_buckets}")
  ids = jnp.asarray(ids).astype(jnp.uint32)
  if function == "mod":
    return (ids % jnp.uint32(num_buckets)).astype(jnp.int32)
  rng = np.random.default_rng(seed)
  mult = jnp.uint32(int(rng.integers(1, 2**31)) * 2 + 1)  # odd multiplier
  add = jnp.uint32(int(rng.integers(0, 2**32)))
  h = ids * mult + add  # uint32 arithmetic wraps modulo 2**32
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x45D9F3B)
  h = h ^ (h >> 16)
  return (h % jnp.uint32(num_buckets)).astype(jnp.int32)


@dataclasses.dataclass
class HashedTable(base.TableArtifact):
  """Stage-B artifact of the hashing trick for one field.

  Attributes:
    rows: float32 ``[num_buckets, dim]``.
    first_order: float32 ``[num_buckets]`` or None.
    vocab_size: ids of the field it replaces (the OOV id included).
    hash_seed, hash_function: the hash (`hash_ids`).
    name: field name.
  """

  rows: np.ndarray
  first_order: np.ndarray | None
  vocab_size: int
  hash_seed: int = 0
  hash_function: str = "universal"
  name: str = ""
  method = "hash"
  knob_names = ("num_buckets", "hash_function", "hash_seed")
  num_buckets = base.axis_size("rows", 0)
  dim = base.axis_size("rows", 1)

  def buckets(self) -> np.ndarray:
    """int32 ``[vocab_size]``: the bucket of every id."""
    ids = np.arange(self.vocab_size)
    return np.asarray(hash_ids(ids, self.num_buckets, self.hash_seed, self.hash_function))

  def nbytes(self, packed: bool = True) -> int:
    """Embedding bytes (float32 rows; packed and stored agree)."""
    del packed
    return self.num_buckets * self.dim * base.FLOAT_BYTES

  def first_order_nbytes(self) -> int:
    return self.num_buckets * base.FLOAT_BYTES


@base.layer_of(HashedTable)
class HashedEmbed(nnx.Module):
  """Hashing-trick table; satisfies the `Table` interface of `mec_jax.layers.base`.

  Args:
    vocab_size: ids V of the field (out-of-range ids map to the OOV id ``V - 1``, the id
      policy of `mec_jax.layers.base`).
    rows: float ``[num_buckets, dim]`` initial bucket rows (trainable, ``hashed_rows``).
    first_order: optional float ``[num_buckets]`` first-order weights (``hashed_first_order``).
    hash_seed, hash_function: as in `hash_ids`.
  """

  def __init__(
    self,
    vocab_size: int,
    rows: np.ndarray | jax.Array,
    *,
    first_order: np.ndarray | jax.Array | None = None,
    hash_seed: int = 0,
    hash_function: str = "universal",
  ):
    rows = jnp.asarray(rows, jnp.float32)
    if vocab_size < 1 or rows.ndim != 2 or rows.shape[0] < 1:
      raise ValueError(
        f"HashedEmbed: needs vocab_size >= 1 and rows [num_buckets, dim], got {vocab_size} and "
        f"{rows.shape}"
      )
    self.vocab_size = int(vocab_size)
    self.num_buckets, self.dim = (int(n) for n in rows.shape)
    self.hash_seed = int(hash_seed)
    self.hash_function = hash_function
    hash_ids(jnp.zeros((1,), jnp.int32), self.num_buckets, self.hash_seed, hash_function)  # checks
    self.hashed_rows = nnx.Param(rows)
    self.hashed_first_order = base.first_order_param(
      first_order, (self.num_buckets,), "HashedEmbed"
    )

  def _buckets(self, ids: jax.Array) -> jax.Array:
    ids = lookup_ids(ids, self.vocab_size, self.vocab_size - 1, "HashedEmbed")
    return hash_ids(ids, self.num_buckets, self.hash_seed, self.hash_function)

  def __call__(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [..., dim]``."""
    return take_rows(self.hashed_rows[...], self._buckets(ids))

  def first_order(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [...]`` (zeros without first-order weights)."""
    return base.first_order_at(self.hashed_first_order, self._buckets(ids))
