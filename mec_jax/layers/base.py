"""The interface every embedding module implements, so a backbone never knows which one it got.

Two levels:

* A **table** embeds the ids of one field: ``table(ids) -> [..., dim]`` and
  ``table.first_order(ids) -> [...]`` (the field's 1-d LR weight per id). `Embed` (a full
  table) and `CodebookEmbed` (product-quantized codes + codebooks) are tables.
* A **field embedding** embeds a whole batch: ``embedding(ids, values) -> [batch, num_fields, dim]``
  and ``embedding.first_order(ids, values) -> [batch, num_fields]``, where ``ids``/``values`` are the
  ``[batch, num_fields]`` arrays of the batch format (see ``mec_jax.data.schema``). Backbones take a
  field embedding in their constructor and use only this interface plus ``num_fields``/``embed_dim``.

Id policy (every table follows it, so one bad id means the same row in the full and the
compressed model):

* **At the data boundary** (host, outside jit: `check_ids`, called by ``train.evaluation.
  check_split`` for every split `fit` and `evaluate_splits` see, and once per run by the
  pipeline's preflight): every id must be an integer in ``[0, vocab_size)`` of its field.
  Negative ids, ids ``>= vocab_size`` and ids too wide for int32 (e.g. int64 ``>= 2**31``, which
  JAX would silently wrap) raise `DataError` naming the split, row, field and value.
* **Inside a table** (jit, where nothing can raise: `lookup_ids`): any id outside
  ``[0, vocab_size)`` (negative, too large, or a host int64 too wide for int32) reads the row
  of the field's OOV id, ``vocab_size - 1`` by default (the schema's OOV id: rare and unseen
  values already map there). Every table (`Embed`, `CodebookEmbed`, `HashedEmbed`, `QREmbed`,
  `RowwiseQuantEmbed`) and the export (`mec_jax.export.ServedModel`) follow it.
  Host ids (numpy, lists) are mapped in their own width before the int32 cast
  (`mec_jax.ids.host_ids`). JAX ids are int32 without x64, so a traced id never exceeds
  ``2**31 - 1``; a numpy int64 handed to ``jax.jit`` as an argument is cast (wrapped) by JAX
  before any table sees it, so wide host ids go through `mec_jax.ids.host_ids` before jit.
* **Non-integer ids** (float, bool) raise `DataError` at the table, at trace time under jit: a
  float id 1.7 is never truncated to row 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.errors import DataError
from mec_jax.ids import check_integer_ids, host_ids
from mec_jax.ops import take_rows

FLOAT_BYTES = 4  # float32, the dtype of every trained table


@runtime_checkable
class Table(Protocol):
  """One field's embedding table: ``vocab_size`` ids, rows of size ``dim``."""

  vocab_size: int
  dim: int

  def __call__(self, ids: jax.Array) -> jax.Array:
    """int ``ids [...]`` -> float32 ``[..., dim]``."""

  def first_order(self, ids: jax.Array) -> jax.Array:
    """int ``ids [...]`` -> float32 ``[...]``, the field's first-order (LR) weight per id."""


@runtime_checkable
class FieldEmbedder(Protocol):
  """Embeds a whole batch of ``num_fields`` fields into rows of size ``embed_dim``."""

  num_fields: int
  embed_dim: int

  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """``ids`` int32 ``[batch, F]``, ``values`` float32 ``[batch, F]`` -> ``[batch, F, embed_dim]``."""

  def first_order(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """int32 ``ids [batch, F]``, float32 ``values [batch, F]`` -> float32 ``[batch, F]``."""


class TableArtifact:
  """The shape the stage-B artifacts of the baseline tables share (`HashedTable`, `QRTable`,
  `CCETable`, `RobeTable`, `RowwiseTable`).

  Each is a dataclass whose fields hold one field's arrays and settings, ``first_order``
  (float32 weights, or None) among them, and whose layer (a `Table` class, declared with
  `layer_of`) takes those fields as constructor arguments of the same names. Stage C trains the
  layer; `mec_jax.methods` reads its parameters back into the artifact.

  Attributes:
    layer_type: the `Table` class `to_layer` builds (set by `layer_of`).
    knob_names: the attributes `knobs` reports (``report.json`` ``compressed_fields``).
  """

  first_order: np.ndarray | None
  layer_type: ClassVar[type]
  knob_names: ClassVar[tuple[str, ...]] = ()

  def knobs(self) -> dict:
    """``{name: value}`` of `knob_names`."""
    return {name: getattr(self, name) for name in self.knob_names}

  def to_layer(self, *, rngs: nnx.Rngs, first_order: bool = True) -> nnx.Module:
    """The layer of this artifact: its fields as constructor arguments by name (a layer argument
    the artifact has no field for keeps its default); ``first_order=False`` leaves out the
    first-order weights (a backbone without first-order terms)."""
    del rngs  # every weight comes from the artifact
    names = list(inspect.signature(self.layer_type.__init__).parameters)[1:]  # past ``self``
    args = {n: getattr(self, n) for n in names if n != "first_order" and hasattr(self, n)}
    return self.layer_type(**args, first_order=self.first_order if first_order else None)


def layer_of(artifact: type[TableArtifact]):
  """Class decorator of a `Table`: the layer ``artifact.to_layer`` builds."""

  def register(layer: type) -> type:
    artifact.layer_type = layer
    return layer

  return register


def axis_size(array: str, axis: int) -> property:
  """A read-only int property: the size of the artifact's field ``array`` along ``axis``
  (``dim = axis_size("rows", 1)``)."""
  return property(lambda self: int(getattr(self, array).shape[axis]))


def first_order_param(values, shape: tuple[int, ...], where: str):
  """A layer's optional first-order weights: ``nnx.data`` of an ``nnx.Param`` of float32
  ``values [*shape]``, or of None when ``values`` is None.

  Raises:
    ValueError: ``values`` of another shape (named with ``where``, the layer).
  """
  if values is None:
    return nnx.data(None)
  if np.shape(values) != tuple(shape):
    raise ValueError(f"{where}: first_order shape {np.shape(values)}, expected {tuple(shape)}")
  return nnx.data(nnx.Param(jnp.asarray(values, jnp.float32)))


def first_order_at(weights, rows: jax.Array, *, summed: bool = False) -> jax.Array:
  """float32 first-order weight per id: ``weights`` (flattened) at ``rows``; zeros without weights.

  Args:
    weights: the layer's `first_order_param` value (an ``nnx.Param`` or None).
    rows: int32 ``[...]`` one weight per id, or ``[..., n]`` with ``summed``: an id's weight is
      the sum of its ``n`` entries.
    summed: sum over the last axis of ``rows``.

  Returns:
    float32 ``[...]``.
  """
  shape = rows.shape[:-1] if summed else rows.shape
  if weights is None:
    return jnp.zeros(shape, jnp.float32)
  taken = take_rows(weights[...].reshape(-1), rows)
  return taken.sum(-1) if summed else taken


def lookup_ids(ids, vocab_size: int, oov_id: int, where: str = "ids") -> jax.Array:
  """int32 ids ready to index a ``[vocab_size, ...]`` table: ids outside ``[0, vocab_size)``
  become ``oov_id`` (the in-table half of the id policy above).

  Args:
    ids: int ``[...]``. Host ids (numpy array, list, Python int) are range-checked in their own
      width before the int32 cast (`mec_jax.ids.host_ids`), so int64 ids ``>= 2**31`` read
      ``oov_id`` instead of wrapping onto a real row. A JAX array (traced under jit or not) is
      checked in its own dtype: int32 without x64, so it cannot exceed ``2**31 - 1``; a numpy
      int64 passed as a *jit argument* was already cast (and wrapped) by JAX before this runs,
      so map wide host ids with `mec_jax.ids.host_ids` before they enter jit.
    vocab_size: rows of the table.
    oov_id: row that out-of-range ids read, in ``[0, vocab_size)``.
    where: the table, for the message.

  Returns:
    int32 ``[...]`` in ``[0, vocab_size)``; jit-safe.

  Raises:
    DataError: non-integer ids (float, bool), at trace time under jit.
  """
  if not isinstance(ids, jax.Array):  # host ids; tracers are jax.Arrays
    return jnp.asarray(host_ids(ids, vocab_size, oov_id, where))
  check_integer_ids(ids.dtype, where)
  return jnp.where((ids < 0) | (ids >= vocab_size), oov_id, ids).astype(jnp.int32)


def check_ids(ids: np.ndarray, vocab_sizes: Sequence[int], where: str, names=None) -> None:
  """Raises `DataError` unless every id of field ``f`` lies in ``[0, vocab_sizes[f])`` (the
  data-boundary half of the id policy above). Host-side, one pass over ``ids``.

  Args:
    ids: int ``[rows, num_fields]`` (numpy or memory-mapped; any integer dtype).
    vocab_sizes: ``[num_fields]`` rows of each field's table.
    where: what ``ids`` are, for the message (``"train"``, ``"split 'valid'"``).
    names: optional field names for the message (default: field indices).
  """
  ids = np.asarray(ids) if not isinstance(ids, np.ndarray) else ids
  if not np.issubdtype(ids.dtype, np.integer):
    raise DataError(f"{where}: ids must be integers, got {ids.dtype}")
  if ids.ndim != 2 or ids.shape[1] != len(vocab_sizes):
    raise DataError(f"{where}: ids has shape {ids.shape}, expected [rows, {len(vocab_sizes)}]")
  if not ids.size:
    return
  low, high = ids.min(axis=0), ids.max(axis=0)
  for field, (lo, hi, vocab) in enumerate(zip(low, high, vocab_sizes, strict=True)):
    if lo < 0 or hi >= vocab:
      column = ids[:, field]
      row = int(np.argmax((column < 0) | (column >= vocab)))
      name = repr(names[field]) if names is not None else str(field)
      wide = " (too wide for int32)" if not -(2**31) <= int(column[row]) < 2**31 else ""
      raise DataError(
        f"{where}: id {int(column[row])}{wide} at row {row}, field {name} is outside the "
        f"table's [0, {vocab}); encoded ids must be in range (unseen values map to the OOV id "
        f"{vocab - 1})"
      )
