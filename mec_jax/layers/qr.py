"""Quotient-remainder (QR) compositional embeddings: two small tables combined per id.

A large table of ``n = ceil(V / c)`` rows and a small one of ``c = num_collisions`` rows; id ``v``
embeds as ``large[i(v)] * small[j(v)]`` (element-wise product; ``combine="sum"`` adds them
instead), with ``(i, j)`` one of two complementary partitions (``large_index``):

* ``remainder``: ``i = v mod n``, ``j = v // n``, the paper's Algorithm 1
  (``W_rem[v mod m] * W_quo[v // m]``) with ``m = n``: the large table is the hashing trick's
  ``mod`` table. Ids in mec_jax are sorted by train frequency, so the ``n`` most popular ids get
  large rows of their own, each shared only with ids ``n, 2n, ...`` places rarer.
* ``quotient``: ``i = v // c``, ``j = v mod c``, Algorithm 1 with ``m = c`` (the paper's PyTorch
  ``QREmbeddingBag``). On frequency-sorted ids the ``c`` most popular ids share one large row and
  differ only through the small table. On ids in random order (raw hashed values) both layouts
  are the same method.

Every id gets a distinct pair of rows, at ``(n + c) * d`` floats instead of ``V * d``: at most
``sqrt(V) / 2`` times fewer.

References:
  Shi, Mudigere, Naumov & Yang, "Compositional Embeddings Using Complementary Partitions for
  Memory-Efficient Recommendation Systems", KDD 2020.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.layers import base
from mec_jax.layers.base import lookup_ids
from mec_jax.ops import take_rows

COMBINES = ("mult", "sum")
LARGE_INDEX = ("remainder", "quotient")


def qr_rows(vocab_size: int, num_collisions: int) -> tuple[int, int]:
  """``(quotient rows, remainder rows)`` = ``(ceil(V / c), c)``."""
  if num_collisions < 1:
    raise ValueError(f"QR: num_collisions must be >= 1, got {num_collisions}")
  return math.ceil(vocab_size / num_collisions), int(num_collisions)


def qr_index(ids, vocab_size: int, num_collisions: int, large_index: str):
  """``(large-table rows, small-table rows)`` of int ``ids [...]`` (numpy or jax) in ``[0, V)``."""
  if large_index == "remainder":
    large = math.ceil(vocab_size / num_collisions)
    return ids % large, ids // large
  if large_index == "quotient":
    return ids // num_collisions, ids % num_collisions
  raise ValueError(f"QR: large_index={large_index!r}; expected one of {LARGE_INDEX}")


def combine_rows(quotient: jax.Array, remainder: jax.Array, combine: str) -> jax.Array:
  """The QR operation on looked-up rows of equal shape."""
  if combine == "mult":
    return quotient * remainder
  if combine == "sum":
    return quotient + remainder
  raise ValueError(f"QR: combine={combine!r}; expected one of {COMBINES}")


@dataclasses.dataclass
class QRTable(base.TableArtifact):
  """Stage-B artifact of a QR embedding for one field.

  Attributes:
    quotient: float32 ``[ceil(V / c), dim]``, the large table (``QREmbeddingBag``'s quotient table).
    remainder: float32 ``[c, dim]``, the small table.
    first_order: float32 ``[ceil(V / c) + c]`` (large-table weights, then small-table weights; an
      id's weight is their sum) or None.
    vocab_size: V.
    combine: ``mult`` or ``sum``.
    name: field name.
    large_index: ``remainder`` or ``quotient`` (see the module docstring); None (files written
      before the choice existed) reads as ``quotient``.
  """

  quotient: np.ndarray
  remainder: np.ndarray
  first_order: np.ndarray | None
  vocab_size: int
  combine: str = "mult"
  name: str = ""
  large_index: str | None = "quotient"
  method = "qr"
  knob_names = ("num_collisions", "quotient_rows", "combine", "large_index")
  quotient_rows = base.axis_size("quotient", 0)
  num_collisions = base.axis_size("remainder", 0)
  dim = base.axis_size("quotient", 1)

  def reconstruct(self) -> np.ndarray:
    """float32 ``[vocab_size, dim]``: the dense table the two factors stand for."""
    large, small = qr_index(
      np.arange(self.vocab_size), self.vocab_size, self.num_collisions, self.layout
    )
    return np.asarray(combine_rows(self.quotient[large], self.remainder[small], self.combine))

  def __post_init__(self):
    if self.large_index is None:  # a file written before the choice existed
      self.large_index = "quotient"

  @property
  def layout(self) -> str:
    return self.large_index or "quotient"

  def nbytes(self, packed: bool = True) -> int:
    del packed
    return (self.quotient.shape[0] + self.num_collisions) * self.dim * base.FLOAT_BYTES

  def first_order_nbytes(self) -> int:
    return (self.quotient.shape[0] + self.num_collisions) * base.FLOAT_BYTES


@base.layer_of(QRTable)
class QREmbed(nnx.Module):
  """QR embedding; satisfies the `Table` interface of `mec_jax.layers.base`.

  Args:
    vocab_size: V (out-of-range ids map to the OOV id ``V - 1``, the id policy of
      `mec_jax.layers.base`).
    quotient: float ``[ceil(V / c), dim]`` (trainable, ``quotient_rows``).
    remainder: float ``[c, dim]`` (trainable, ``remainder_rows``).
    first_order: optional float ``[ceil(V / c) + c]`` (trainable, ``qr_first_order``).
    combine: ``mult`` (the paper's best) or ``sum``.
    large_index: ``remainder`` (id ``v`` reads large row ``v mod ceil(V / c)``) or ``quotient``
      (large row ``v // c``; also None); see the module docstring.
  """

  def __init__(
    self,
    vocab_size: int,
    quotient: np.ndarray | jax.Array,
    remainder: np.ndarray | jax.Array,
    *,
    first_order: np.ndarray | jax.Array | None = None,
    combine: str = "mult",
    large_index: str | None = "quotient",
  ):
    if combine not in COMBINES:
      raise ValueError(f"QREmbed: combine={combine!r}; expected one of {COMBINES}")
    large_index = large_index or "quotient"
    if large_index not in LARGE_INDEX:
      raise ValueError(f"QREmbed: large_index={large_index!r}; expected one of {LARGE_INDEX}")
    quotient = jnp.asarray(quotient, jnp.float32)
    remainder = jnp.asarray(remainder, jnp.float32)
    expected = qr_rows(int(vocab_size), int(remainder.shape[0]))
    if quotient.shape[0] != expected[0] or quotient.shape[1:] != remainder.shape[1:]:
      raise ValueError(
        f"QREmbed: quotient {quotient.shape} and remainder {remainder.shape} do not fit "
        f"vocab_size {vocab_size} (expected quotient [{expected[0]}, dim], remainder [c, dim])"
      )
    self.vocab_size = int(vocab_size)
    self.num_collisions = int(remainder.shape[0])
    self.dim = int(quotient.shape[1])
    self.combine = combine
    self.large_index = large_index
    self.quotient_rows = nnx.Param(quotient)
    self.remainder_rows = nnx.Param(remainder)
    self.qr_first_order = base.first_order_param(first_order, (sum(expected),), "QREmbed")

  def _split(self, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    ids = lookup_ids(ids, self.vocab_size, self.vocab_size - 1, "QREmbed")
    return qr_index(ids, self.vocab_size, self.num_collisions, self.large_index)

  def __call__(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [..., dim]``."""
    q, r = self._split(ids)
    quotient = take_rows(self.quotient_rows[...], q)
    return combine_rows(quotient, take_rows(self.remainder_rows[...], r), self.combine)

  def first_order(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [...]``: quotient weight + remainder weight (zeros without them)."""
    q, r = self._split(ids)
    weights, num_quotients = self.qr_first_order, self.quotient_rows.shape[0]
    return base.first_order_at(weights, q) + base.first_order_at(weights, num_quotients + r)
