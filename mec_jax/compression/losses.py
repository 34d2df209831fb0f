"""MEC's loss terms as pure functions over batches, plus the popularity weights they use.

Every per-row term is averaged with the popularity weights ``w_v`` (``sum_v w_v l_v / sum_v w_v``),
which is the released code's row repetition without the memory blow-up; zero-weight rows
(batch padding) contribute nothing.

Shapes: ``B`` rows per batch, ``M`` sub-spaces, ``K`` codes per sub-space, ``s`` sub-space dim,
``D = M * s`` latent dim, ``J`` negatives per row.

References:
  Wang et al., "A Universal Framework for Compressing Embeddings in CTR Prediction",
  DASFAA 2025 (arXiv 2502.15355); van den Oord et al., "Neural Discrete Representation
  Learning" (VQ-VAE), NeurIPS 2017; van den Oord et al., "Representation Learning with
  Contrastive Predictive Coding" (InfoNCE), 2018.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mec_jax.compression.streaming import NEAREST_TILE, to_tiles

_EPS = 1e-8


def popularity_weights(counts) -> np.ndarray:
  """float32 ``[V]`` PWR weights ``max(1, floor(log2 n_v))`` (``n_v = 0`` gives 1).

  Args:
    counts: ``[V]`` non-negative integer train-split counts of each value.
  """
  counts = np.asarray(counts)
  if counts.ndim != 1:
    raise ValueError(f"counts must be 1-D [vocab_size], got shape {counts.shape}")
  if counts.size and (not np.all(np.isfinite(counts)) or counts.min() < 0):
    raise ValueError("counts must be finite and non-negative")
  # floor(log2 n) exactly for integers: bit length - 1 (float log2 can round up just below 2^k).
  n = np.maximum(np.floor(counts), 1).astype(np.int64)
  floor_log2 = np.frexp(n.astype(np.float64))[1] - 1
  return np.maximum(1, floor_log2).astype(np.float32)


def weighted_mean(per_row: jax.Array, weights: jax.Array) -> jax.Array:
  """``sum_v w_v per_row_v / sum_v w_v`` (0 for an all-zero-weight batch)."""
  return jnp.sum(weights * per_row) / jnp.maximum(jnp.sum(weights), _EPS)


def reconstruction_loss(x_hat: jax.Array, x: jax.Array, weights: jax.Array) -> jax.Array:
  """Weighted mean over rows of ``||x_hat - x||^2`` (``[B, d]`` inputs)."""
  return weighted_mean(jnp.sum((x_hat - x) ** 2, -1), weights)


def vq_loss(z: jax.Array, q: jax.Array, weights: jax.Array, commitment: float) -> jax.Array:
  """Codebook + commitment: weighted mean of ``||sg(z) - q||^2 + beta ||z - sg(q)||^2``."""
  sg = jax.lax.stop_gradient
  codebook = jnp.sum((sg(z) - q) ** 2, -1)
  commit = jnp.sum((z - sg(q)) ** 2, -1)
  return weighted_mean(codebook + commitment * commit, weights)


def soft_assignment(z_sub: jax.Array, codebooks: jax.Array, temperature: float) -> jax.Array:
  """``[B, M, K]`` ``softmax_k(-||z_m - B_m[k]||^2 / tau)`` for ``z_sub [B, M, s]``."""
  return _soft_assignment_mbk(z_sub, codebooks, temperature).transpose(1, 0, 2)


def _soft_assignment_mbk(z_sub: jax.Array, codebooks: jax.Array, temperature: float) -> jax.Array:
  """`soft_assignment` as ``[M, B, K]`` (the layout XLA's CPU batched matmul is fast in)."""
  # Expanded form: never builds the [B, M, K, s] difference tensor.
  cross = jnp.einsum("bms,mks->mbk", z_sub, codebooks)
  d2 = jnp.sum(z_sub**2, -1).T[..., None] - 2.0 * cross + jnp.sum(codebooks**2, -1)[:, None]
  return jax.nn.softmax(-d2 / temperature, axis=-1)


def soft_usage(
  z_sub: jax.Array, codebooks: jax.Array, weights: jax.Array, temperature: float
) -> jax.Array:
  """``[M, K]`` ``sum_b w_b p_m(k|b)``, over tiles of `NEAREST_TILE` rows.

  Only one tile's ``[M, tile, K]`` probabilities exist at once (forward and backward), which
  keeps them in the CPU's cache: ~7x faster per row than one ``[B, M, K]`` block at B = 4096.
  """

  def tile(z, w):
    return jnp.einsum("b,mbk->mk", w, _soft_assignment_mbk(z, codebooks, temperature))

  if z_sub.shape[0] <= NEAREST_TILE:
    return tile(z_sub, weights)
  # Weight-0 padding rows add nothing to the usage.
  return jnp.sum(jax.lax.map(lambda zw: tile(*zw), (to_tiles(z_sub), to_tiles(weights))), 0)


def balance_penalty(
  z_sub: jax.Array, codebooks: jax.Array, weights: jax.Array, temperature: float
) -> jax.Array:
  """Code-balance regularizer, mean over sub-spaces of ``ln K - H(u_m)``.

  ``u_m(k) = sum_v w_v p_m(k|v) / sum_v w_v`` is the popularity-weighted soft usage of code k;
  the penalty is 0 exactly when every code is used equally and, unlike the released code's
  ``(PPL - ln K)^2`` on hard counts, it is differentiable in both ``z`` and the codebooks.
  """
  usage = soft_usage(z_sub, codebooks, weights, temperature)
  usage = usage / jnp.maximum(jnp.sum(weights), _EPS)
  entropy = -jnp.sum(usage * jnp.log(usage + _EPS), -1)
  return jnp.mean(math.log(codebooks.shape[1]) - entropy)


def one_position_negatives(
  key: jax.Array, codes: jax.Array, codebook_size: int, num_negatives: int
) -> jax.Array:
  """int32 ``[B, J, M]``: each negative is the row's code with ONE position changed.

  Position and replacement are drawn independently per row and per negative; the replacement is
  uniform over the ``K - 1`` codes that differ from the original, so every negative differs from
  the positive in exactly one sub-code.
  """
  batch, num_subspaces = codes.shape
  pos_key, code_key = jax.random.split(key)
  position = jax.random.randint(pos_key, (batch, num_negatives), 0, num_subspaces)
  shift = jax.random.randint(code_key, (batch, num_negatives), 1, codebook_size)
  negatives = jnp.broadcast_to(codes[:, None, :], (batch, num_negatives, num_subspaces))
  hit = position[..., None] == jnp.arange(num_subspaces)
  return jnp.where(hit, (negatives + shift[..., None]) % codebook_size, negatives).astype(jnp.int32)


def _cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), _EPS)
  b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), _EPS)
  return jnp.sum(a * b, -1)


def contrastive_loss(
  anchor: jax.Array,
  positive: jax.Array,
  negatives: jax.Array,
  weights: jax.Array,
  temperature: float,
) -> jax.Array:
  """Weighted InfoNCE with cosine similarity.

  Args:
    anchor: ``[B, D]`` (the encoder output z).
    positive: ``[B, D]`` (its quantization q).
    negatives: ``[B, J, D]`` (q with one sub-code replaced, see `one_position_negatives`).
    weights: ``[B]`` row weights.
    temperature: tau_c.
  """
  pos = _cosine(anchor, positive)[:, None]
  neg = _cosine(anchor[:, None, :], negatives)
  logits = jnp.concatenate([pos, neg], axis=1) / temperature
  return weighted_mean(-jax.nn.log_softmax(logits, axis=1)[:, 0], weights)


# ---- the released code's versions, kept for the `reference` variant ---------------------------


def shared_negative_codes(key: jax.Array, codes: jax.Array, codebook_size: int) -> jax.Array:
  """int32 ``[B, M]``: ONE random code vector, every position replaced, shared by the batch.

  What the released ``neg_codes[:, random_idx] = randint(...)`` amounts to once the batch has at
  least M rows (the replacement may even equal the original code).
  """
  shared = jax.random.randint(key, (codes.shape[1],), 0, codebook_size)
  return jnp.broadcast_to(shared, codes.shape).astype(jnp.int32)


def reference_contrastive_loss(
  anchor: jax.Array, positive: jax.Array, negative: jax.Array, weights: jax.Array
) -> jax.Array:
  """The released two-way softmax ``-log(e^pos / (e^pos + e^neg))``, cosine, temperature 1."""
  logits = jnp.stack([_cosine(anchor, positive), _cosine(anchor, negative)], axis=1)
  return weighted_mean(-jax.nn.log_softmax(logits, axis=1)[:, 0], weights)


def perplexity_penalty(codes: jax.Array, codebook_size: int, weights: jax.Array) -> jax.Array:
  """The released ``(mean_m PPL_m - ln K)^2`` on hard code counts; it carries no gradient."""
  one_hot = jax.nn.one_hot(codes, codebook_size)  # [B, M, K]
  probs = jnp.einsum("b,bmk->mk", weights, one_hot) / jnp.maximum(jnp.sum(weights), _EPS)
  perplexity = jnp.exp(-jnp.sum(probs * jnp.log(probs + 1e-10), -1))
  return jax.lax.stop_gradient((jnp.mean(perplexity) - math.log(codebook_size)) ** 2)
