"""`CodebookEmbed`: an embedding table stored as product-quantized codes plus small codebooks.

Row ``v`` embeds as ``concat_m codebooks[m, codes[v, m]]``. Codes are a non-trainable integer
variable (`Codes`, not an ``nnx.Param``): an optimizer built with ``wrt=nnx.Param`` never sees them,
so they are never updated. Codebooks (and the optional first-order codebook) are trainable.

References:
  Wang et al., "A Universal Framework for Compressing Embeddings in CTR Prediction", DASFAA 2025
  (arXiv 2502.15355).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.compression.table import CompressedTable, code_dtype
from mec_jax.layers.base import lookup_ids
from mec_jax.ops import take_rows


class Codes(nnx.Variable):
  """Integer codes ``[vocab_size, num_subspaces]``: state that is carried and saved, never trained."""


class CodebookEmbed(nnx.Module):
  """Product-quantized embedding table; satisfies the `Table` interface of `mec_jax.layers.base`.

  Args:
    vocab_size: number of ids V (the OOV id included).
    num_subspaces: M, codes per id.
    codebook_size: K, codewords per sub-space.
    subspace_dim: s, so the embedding size is ``M * s``.
    rngs: NNX rngs; used for codes and codebooks not given.
    codes: optional ``[V, M]`` integer codes. Default: random codes (a hashing baseline).
    codebooks: optional float ``[M, K, s]``. Default: normal with ``init_std``.
    first_order: also hold a first-order (LR) codebook ``[M, K]``; a row's weight is
      ``sum_m first_order[m, codes[v, m]]``.
    first_order_codebook: optional initial ``[M, K]`` first-order codebook.
    oov_id: id that out-of-range ids map to (default ``V - 1``, the schema's OOV id).
    init_std: std of default codebook init.
  """

  def __init__(
    self,
    vocab_size: int,
    num_subspaces: int,
    codebook_size: int,
    subspace_dim: int,
    *,
    rngs: nnx.Rngs,
    codes: np.ndarray | jax.Array | None = None,
    codebooks: np.ndarray | jax.Array | None = None,
    first_order: bool = True,
    first_order_codebook: np.ndarray | jax.Array | None = None,
    oov_id: int | None = None,
    init_std: float = 1e-2,
  ):
    for name, value, low in (
      ("vocab_size", vocab_size, 1),
      ("num_subspaces", num_subspaces, 1),
      ("codebook_size", codebook_size, 2),
      ("subspace_dim", subspace_dim, 1),
    ):
      if int(value) < low:
        raise ValueError(f"CodebookEmbed: {name} must be >= {low}, got {value}")
    self.vocab_size = int(vocab_size)
    self.num_subspaces = int(num_subspaces)
    self.codebook_size = int(codebook_size)
    self.subspace_dim = int(subspace_dim)
    self.dim = self.num_subspaces * self.subspace_dim
    self.oov_id = self.vocab_size - 1 if oov_id is None else int(oov_id)
    if not 0 <= self.oov_id < self.vocab_size:
      raise ValueError(f"CodebookEmbed: oov_id {self.oov_id} outside [0, {self.vocab_size})")

    dtype = code_dtype(self.codebook_size)
    if codes is None:
      codes = jax.random.randint(
        rngs.params(), (self.vocab_size, self.num_subspaces), 0, self.codebook_size
      )
    codes = np.asarray(codes)
    if codes.shape != (self.vocab_size, self.num_subspaces):
      raise ValueError(
        f"CodebookEmbed: codes shape {codes.shape}, expected ({self.vocab_size}, {self.num_subspaces})"
      )
    if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
      raise ValueError(
        f"CodebookEmbed: codes must lie in [0, {self.codebook_size}), "
        f"got [{codes.min()}, {codes.max()}]"
      )
    self.codes = Codes(jnp.asarray(codes.astype(dtype)))

    shape = (self.num_subspaces, self.codebook_size, self.subspace_dim)
    if codebooks is None:
      codebooks = init_std * jax.random.normal(rngs.params(), shape)
    if tuple(np.shape(codebooks)) != shape:
      raise ValueError(f"CodebookEmbed: codebooks shape {np.shape(codebooks)}, expected {shape}")
    self.codebooks = nnx.Param(jnp.asarray(codebooks, jnp.float32))

    fo_param = None
    if first_order:
      fo_shape = shape[:2]
      if first_order_codebook is None:
        first_order_codebook = jnp.zeros(fo_shape, jnp.float32)
      if tuple(np.shape(first_order_codebook)) != fo_shape:
        raise ValueError(
          f"CodebookEmbed: first_order_codebook shape {np.shape(first_order_codebook)}, "
          f"expected {fo_shape}"
        )
      fo_param = nnx.Param(jnp.asarray(first_order_codebook, jnp.float32))
    self.first_order_codebook = nnx.data(fo_param)

  @classmethod
  def from_table(
    cls, table: CompressedTable, *, rngs: nnx.Rngs, first_order: bool = True, **kwargs
  ) -> CodebookEmbed:
    """Builds the layer from a stage-B artifact (codes, codebooks, first-order codebook)."""
    return cls(
      table.vocab_size,
      table.num_subspaces,
      table.codebook_size,
      table.subspace_dim,
      rngs=rngs,
      codes=table.codes,
      codebooks=table.codebooks,
      first_order=first_order,
      first_order_codebook=table.first_order if first_order else None,
      **kwargs,
    )

  def _codes(self, ids: jax.Array) -> jax.Array:
    """int32 ``[..., M]`` codes of ``ids``; out-of-range ids take the OOV id's codes (the id
    policy of `mec_jax.layers.base`, shared with `Embed`)."""
    ids = lookup_ids(ids, self.vocab_size, self.oov_id, "CodebookEmbed")
    return self.codes[...][ids].astype(jnp.int32)

  def _rows(self, codes: jax.Array) -> jax.Array:
    """``codes [..., M]`` -> rows ``m * K + code`` of the codebooks flattened to ``[M * K, ...]``.

    One flat lookup per call, so the backward pass is one contention-free segment sum over all
    M sub-spaces (`mec_jax.ops.take_rows`): K rows get the whole batch, the worst collisions.
    """
    return codes + self.codebook_size * jnp.arange(self.num_subspaces, dtype=codes.dtype)

  def __call__(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [..., M * s]``: concatenation of the selected codewords."""
    codes = self._codes(ids)
    flat = self.codebooks[...].reshape(-1, self.subspace_dim)  # [M * K, s]
    vectors = take_rows(flat, self._rows(codes))  # [..., M, s]
    return vectors.reshape(*codes.shape[:-1], self.dim)

  def first_order(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [...]``: the compressed first-order weight (zeros without one)."""
    codes = self._codes(ids)
    if self.first_order_codebook is None:
      return jnp.zeros(codes.shape[:-1], jnp.float32)
    return take_rows(self.first_order_codebook[...].reshape(-1), self._rows(codes)).sum(-1)

  def to_table(self, **meta) -> CompressedTable:
    """The current codes and (trained) codebooks as a `CompressedTable`."""
    fo = None if self.first_order_codebook is None else np.asarray(self.first_order_codebook[...])
    return CompressedTable(
      codes=np.asarray(self.codes[...]),
      codebooks=np.asarray(self.codebooks[...]),
      first_order=fo,
      **meta,
    )
