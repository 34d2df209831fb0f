"""`CodebookEmbed` for Flax **linen** models (Google's RecML DLRM, the Flax examples).

One line from a stage-B artifact to a linen module::

  items = linen.CodebookEmbed.from_table(table)  # table: a `CompressedTable`

It computes what the NNX `mec_jax.layers.CodebookEmbed` computes: ``items(ids) -> [..., dim]`` and
``items.first_order(ids) -> [...]``. Variables, after ``model.init``:

* ``params``: ``codebooks [M, K, s]`` and, with ``use_first_order``, ``first_order [M, K]``
  (trainable; they start from the table).
* ``codes``: ``codes [V, M]``, a **non-trainable collection**. Optimize ``variables["params"]``
  only and pass the codes back on every ``apply``
  (``model.apply({"params": params, "codes": codes}, ...)``): they never change. An ``apply``
  without them raises (linen's "collection is immutable" error); codes are never drawn at random.

Unlike ``nnx.bridge.ToLinen(CodebookEmbed, ...)``, the module is built once from the table, keeps
``first_order`` as a method (the flag is ``use_first_order``), and holds no random state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mec_jax.compression.table import CompressedTable, code_dtype
from mec_jax.layers.base import lookup_ids

CODES = "codes"  # the collection that holds the frozen codes


def _constant(array: np.ndarray, dtype) -> Callable[..., jax.Array]:
  return lambda *_: jnp.asarray(array, dtype)


class CodebookEmbed(nn.Module):
  """Linen product-quantized embedding: row ``v`` is ``concat_m codebooks[m, codes[v, m]]``.

  Build it with `from_table`. Ids outside ``[0, vocab_size)`` read the OOV id's row (the id policy
  of `mec_jax.layers.base`).

  Attributes:
    vocab_size: V, ids (the OOV id included).
    num_subspaces: M, codes per id.
    codebook_size: K, codewords per sub-space.
    subspace_dim: s; rows have ``dim = M * s`` floats.
    codes_init: ``() -> [V, M]`` integer codes (required: no random codes).
    codebooks_init: ``(key) -> [M, K, s]`` initial codebooks.
    first_order_init: ``(key) -> [M, K]`` initial first-order codebook (default zeros).
    use_first_order: hold a first-order codebook; ``first_order(ids)`` is zeros without one.
    oov_id: row that out-of-range ids read (default ``V - 1``).
  """

  vocab_size: int
  num_subspaces: int
  codebook_size: int
  subspace_dim: int
  codes_init: Callable[..., jax.Array] | None = None
  codebooks_init: Callable[..., jax.Array] | None = None
  first_order_init: Callable[..., jax.Array] | None = None
  use_first_order: bool = True
  oov_id: int | None = None

  @classmethod
  def from_table(
    cls, table: CompressedTable, *, use_first_order: bool = True, **kwargs
  ) -> CodebookEmbed:
    """The module whose ``init`` gives the table's codes (collection ``codes``), codebooks and
    first-order codebook (zeros when the table has none)."""
    first_order = table.first_order
    return cls(
      vocab_size=table.vocab_size,
      num_subspaces=table.num_subspaces,
      codebook_size=table.codebook_size,
      subspace_dim=table.subspace_dim,
      codes_init=_constant(table.codes, table.codes.dtype),
      codebooks_init=_constant(table.codebooks, jnp.float32),
      first_order_init=None if first_order is None else _constant(first_order, jnp.float32),
      use_first_order=use_first_order,
      **kwargs,
    )

  @property
  def dim(self) -> int:
    """``M * s``, floats per row."""
    return self.num_subspaces * self.subspace_dim

  def setup(self):
    if self.codes_init is None:
      raise ValueError(
        "linen.CodebookEmbed: codes_init is required (build it with CodebookEmbed.from_table)"
      )
    shape = (self.num_subspaces, self.codebook_size)
    self.codes = self.variable(CODES, "codes", self._checked_codes)
    init = self.codebooks_init or nn.initializers.normal(1e-2)
    if self.codebooks_init is None:
      self.codebooks = self.param("codebooks", init, (*shape, self.subspace_dim))
    else:
      self.codebooks = self.param("codebooks", init)
    self.first_order_codebook = None
    if self.use_first_order:
      if self.first_order_init is None:
        self.first_order_codebook = self.param("first_order", nn.initializers.zeros, shape)
      else:
        self.first_order_codebook = self.param("first_order", self.first_order_init)

  def _checked_codes(self) -> jax.Array:
    codes = np.asarray(self.codes_init())
    if codes.shape != (self.vocab_size, self.num_subspaces):
      raise ValueError(
        f"linen.CodebookEmbed: codes shape {codes.shape}, expected "
        f"({self.vocab_size}, {self.num_subspaces})"
      )
    return jnp.asarray(codes.astype(code_dtype(self.codebook_size)))

  def _codes(self, ids) -> jax.Array:
    oov = self.vocab_size - 1 if self.oov_id is None else self.oov_id
    return self.codes.value[lookup_ids(ids, self.vocab_size, oov)].astype(jnp.int32)

  def __call__(self, ids) -> jax.Array:
    """int ``ids [...]`` -> float32 ``[..., M * s]``."""
    codes = self._codes(ids)
    vectors = self.codebooks[jnp.arange(self.num_subspaces), codes]  # [..., M, s]
    return vectors.reshape(*codes.shape[:-1], self.dim)

  def first_order(self, ids) -> jax.Array:
    """int ``ids [...]`` -> float32 ``[...]``: the compressed first-order weight (zeros without
    one)."""
    if self.first_order_codebook is None:
      return jnp.zeros(jnp.shape(ids), jnp.float32)
    codes = self._codes(ids)
    return self.first_order_codebook[jnp.arange(self.num_subspaces), codes].sum(-1)


def to_table(variables: Mapping, **meta) -> CompressedTable:
  """The (trained) codebooks of one linen `CodebookEmbed` as a `CompressedTable`.

  Args:
    variables: that module's variables, ``{"params": {"codebooks", ["first_order"]}, "codes":
      {"codes"}}`` (e.g. ``variables["params"]["items"]`` and ``variables["codes"]["items"]`` of a
      parent model, gathered as ``{"params": ..., "codes": ...}``).
    **meta: `CompressedTable` fields such as ``name``.
  """
  params, codes = variables["params"], variables[CODES]
  first_order = params.get("first_order")
  return CompressedTable(
    codes=np.asarray(codes["codes"]),
    codebooks=np.asarray(params["codebooks"]),
    first_order=None if first_order is None else np.asarray(first_order),
    **meta,
  )
