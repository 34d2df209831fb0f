"""The MEC quantizer network (encoder -> product quantizer -> decoder), its loss and train step.

``z = enc(x)`` is split into M sub-vectors, each replaced by its nearest codeword, giving codes
and ``q``; the decoder maps ``q`` back to the table space. With the straight-through estimator
the decoder sees ``z + sg(q - z)``, so reconstruction gradients reach the encoder; the
``reference`` variant (the released code) decodes ``q`` itself, which leaves the encoder with no
gradient at all, i.e. a frozen random projection.

References:
  Wang et al., "A Universal Framework for Compressing Embeddings in CTR Prediction",
  DASFAA 2025 (arXiv 2502.15355); Bengio et al., straight-through estimator, 2013.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mec_jax.compression import losses, pq
from mec_jax.mesh import DATA_AXIS


class QuantizerOutput(NamedTuple):
  z: jax.Array  # [B, D] encoder output
  codes: jax.Array  # [B, M] int32
  q: jax.Array  # [B, D] concatenated codewords
  x_hat: jax.Array  # [B, d] decoder output


def _torch_linear(fan_in: int, fan_out: int, rngs: nnx.Rngs) -> nnx.Linear:
  """An ``nnx.Linear`` with PyTorch's ``nn.Linear`` default init, kernel and bias
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for `reference`."""
  bound = 1.0 / math.sqrt(fan_in)
  init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
  return nnx.Linear(fan_in, fan_out, kernel_init=init, bias_init=init, rngs=rngs)


ENCODERS = ("dense", "block", "none")


def block_mask(dim: int, latent_dim: int, num_subspaces: int) -> jax.Array:
  """float32 ``[dim, latent_dim]``: 1 where input slice m meets latent slice m, else 0."""
  rows = jnp.arange(dim) // (dim // num_subspaces)
  cols = jnp.arange(latent_dim) // (latent_dim // num_subspaces)
  return (rows[:, None] == cols[None, :]).astype(jnp.float32)


class MECQuantizer(nnx.Module):
  """Encoder ``d -> M*s``, codebooks ``[M, K, s]``, decoder ``M*s -> d``.

  What ships is the refit of `refit.py`: per code, the weighted mean of the TABLE's slice m. The
  ``encoder`` structure decides how well the trained latent space matches that:

  * ``"dense"``: full linear maps; latent slice m mixes every table dimension, so the code trained
    for z_m is not a code of x_m (the released design).
  * ``"block"``: block-diagonal maps, latent slice m sees only table slice m (and decodes only to
    it), so each sub-code stays a code of its own table slice and the refit can only improve on the
    decoder's reconstruction.
  * ``"none"``: no encoder or decoder, ``z = x`` and ``x_hat = q``: codebooks trained in table space
    against exactly the refit's objective (the balance and contrastive terms act on the table).

  Args:
    dim: d, the table's embedding size.
    latent_dim: ``M * s``.
    num_subspaces: M.
    codebook_size: K.
    straight_through: decode ``z + sg(q - z)`` (MEC) or ``q`` (released code).
    init: ``"orthogonal"``: the encoder starts as the identity when ``latent_dim == dim`` (else
      a random matrix with orthonormal rows/columns) and the decoder as its transpose, so
      training starts at ``x_hat = q`` ~ the k-means reconstruction and the codes can only
      improve on that; ``"torch"``: PyTorch ``nn.Linear`` defaults and codebooks
      U(-1/K, 1/K), as in the released code.
    rngs: NNX random streams.
  """

  def __init__(
    self,
    dim: int,
    latent_dim: int,
    num_subspaces: int,
    codebook_size: int,
    *,
    straight_through: bool = True,
    init: str = "orthogonal",
    encoder: str = "dense",
    rngs: nnx.Rngs,
  ):
    if latent_dim % num_subspaces or dim % num_subspaces:
      raise ValueError(
        f"dim {dim} and latent_dim {latent_dim} must be divisible by num_subspaces {num_subspaces}"
      )
    if init not in ("orthogonal", "torch"):
      raise ValueError(f"init must be 'orthogonal' or 'torch', got {init!r}")
    if encoder not in ENCODERS:
      raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    if encoder == "none" and latent_dim != dim:
      raise ValueError(f"encoder 'none' needs latent_dim == dim ({dim}), got {latent_dim}")
    if encoder != "dense" and init == "torch":
      raise ValueError(f"encoder {encoder!r} needs init 'orthogonal' (the released code is dense)")
    self.num_subspaces = num_subspaces
    self.codebook_size = codebook_size
    self.straight_through = straight_through
    self.encoder_kind = encoder
    mask = block_mask(dim, latent_dim, num_subspaces) if encoder == "block" else None
    sub_dim = latent_dim // num_subspaces
    if encoder == "none":
      self.encoder = self.decoder = None
      codebooks = jnp.zeros((num_subspaces, codebook_size, sub_dim), jnp.float32)
    elif init == "orthogonal":
      if latent_dim == dim:
        kernel = jnp.eye(dim, dtype=jnp.float32)
      else:
        kernel = nnx.initializers.orthogonal()(rngs.params(), (dim, latent_dim), jnp.float32)
      if mask is not None:
        kernel = kernel * mask
      self.encoder = nnx.Linear(dim, latent_dim, rngs=rngs)
      self.decoder = nnx.Linear(latent_dim, dim, rngs=rngs)
      self.encoder.kernel[...] = kernel
      self.decoder.kernel[...] = kernel.T
      codebooks = jnp.zeros((num_subspaces, codebook_size, sub_dim), jnp.float32)
    else:
      self.encoder = _torch_linear(dim, latent_dim, rngs)
      self.decoder = _torch_linear(latent_dim, dim, rngs)
      bound = 1.0 / codebook_size
      codebooks = jax.random.uniform(
        rngs.params(), (num_subspaces, codebook_size, sub_dim), jnp.float32, -bound, bound
      )
    self.codebooks = nnx.Param(codebooks)

  def encode(self, x: jax.Array) -> jax.Array:
    """``[B, d] -> [B, M*s]``."""
    if self.encoder is None:
      return x
    if self.encoder_kind == "dense":
      return self.encoder(x)
    return x @ (self.encoder.kernel[...] * self._mask()) + self.encoder.bias[...]

  def decode(self, q: jax.Array) -> jax.Array:
    """``[B, M*s] -> [B, d]``."""
    if self.decoder is None:
      return q
    if self.encoder_kind == "dense":
      return self.decoder(q)
    return q @ (self.decoder.kernel[...] * self._mask().T) + self.decoder.bias[...]

  def _mask(self) -> jax.Array:
    dim, latent_dim = self.encoder.kernel.shape
    return block_mask(dim, latent_dim, self.num_subspaces)

  def quantize(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``z [B, M*s] -> (codes [B, M] int32, q [B, M*s])``."""
    codebooks = self.codebooks[...]
    codes = pq.nearest_codes(
      pq.split_subspaces(jax.lax.stop_gradient(z), self.num_subspaces), codebooks
    )
    return codes, pq.decode(codes, codebooks)

  def __call__(self, x: jax.Array) -> QuantizerOutput:
    z = self.encode(x)
    codes, q = self.quantize(z)
    st = self.straight_through and self.encoder is not None  # without an encoder, train q
    decoder_input = z + jax.lax.stop_gradient(q - z) if st else q
    return QuantizerOutput(z, codes, q, self.decode(decoder_input))


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Static (hashable) loss configuration of one training run."""

  rec: float = 1.0
  vq: float = 1.0
  bal: float = 0.1
  con: float = 0.1
  commitment: float = 0.25
  balance_temperature: float = 1.0
  contrastive_temperature: float = 0.1
  num_negatives: int = 8
  reference: bool = False  # the released code's loss: see `reference_loss`


def mec_loss(model: MECQuantizer, x, weights, key, cfg: LossWeights):
  """Weighted ``rec + vq + bal + con`` (DESIGN §2.4). Returns ``(total, metrics)``."""
  out = model(x)
  codebooks = model.codebooks[...]
  metrics = {
    "rec": losses.reconstruction_loss(out.x_hat, x, weights),
    "vq": losses.vq_loss(out.z, out.q, weights, cfg.commitment),
  }
  if cfg.bal > 0:
    z_sub = pq.split_subspaces(out.z, model.num_subspaces)
    metrics["bal"] = losses.balance_penalty(z_sub, codebooks, weights, cfg.balance_temperature)
  if cfg.con > 0:
    neg_codes = losses.one_position_negatives(
      key, out.codes, model.codebook_size, cfg.num_negatives
    )
    negatives = pq.decode(neg_codes, codebooks)  # [B, J, D]
    metrics["con"] = losses.contrastive_loss(
      out.z, out.q, negatives, weights, cfg.contrastive_temperature
    )
  lam = {"rec": cfg.rec, "vq": cfg.vq, "bal": cfg.bal, "con": cfg.con}
  total = sum(lam[name] * value for name, value in metrics.items())
  return total, {"loss": total, **metrics}


def reference_loss(model: MECQuantizer, x, weights, key, cfg: LossWeights):
  """The released ``vqvae_with_freq_and_contras.py`` loss.

  ``F.mse_loss`` (mean over elements) of ``dec(q)``; the ``(PPL - ln K)^2`` penalty on hard
  counts (no gradient); a two-way softmax against one batch-shared negative with every position
  replaced, anchored on the input row ``x`` (on ``sg(z)`` when the latent size differs, which the
  released code never did); no VQ / commitment term. ``weights`` stand for the row repetition.
  """
  out = model(x)
  codebooks = model.codebooks[...]
  rec = losses.weighted_mean(jnp.mean((out.x_hat - x) ** 2, -1), weights)
  reg = losses.perplexity_penalty(out.codes, model.codebook_size, weights)
  negative = pq.decode(losses.shared_negative_codes(key, out.codes, model.codebook_size), codebooks)
  anchor = x if x.shape[-1] == out.q.shape[-1] else jax.lax.stop_gradient(out.z)
  con = losses.reference_contrastive_loss(anchor, out.q, negative, weights)
  total = cfg.rec * rec + cfg.bal * reg + cfg.con * con
  return total, {"loss": total, "rec": rec, "bal": reg, "con": con}


@functools.lru_cache(maxsize=32)
def make_optimizer(learning_rate: float) -> optax.GradientTransformation:
  """Adam; cached so equal learning rates give the same (hashable) transformation object."""
  return optax.adam(learning_rate)


@functools.lru_cache(maxsize=32)
def make_train_epoch(graphdef, tx: optax.GradientTransformation, cfg: LossWeights, mesh: Mesh):
  """Jitted ``(params, opt_state, x [S, B, d], w [S, B], key) -> (params, opt_state, metrics)``.

  One call runs S steps with ``lax.scan`` over host-gathered batches (only the epoch's rows
  travel to the device, never the whole table). Batches are sharded over ``'data'`` and
  parameters replicated, so XLA all-reduces the gradients (data parallelism through ``jit``
  shardings). Metrics are the means over the S steps. Cached on its (hashable) arguments, so
  quantizing several tables of the same shape compiles once.
  """
  loss_fn = reference_loss if cfg.reference else mec_loss
  replicated = NamedSharding(mesh, P())
  batches = NamedSharding(mesh, P(None, DATA_AXIS))

  def epoch(params, opt_state, x, w, key):
    def step(carry, inputs):
      params, opt_state = carry
      step_x, step_w, step_key = inputs

      def objective(params):
        return loss_fn(nnx.merge(graphdef, params), step_x, step_w, step_key, cfg)

      grads, metrics = jax.grad(objective, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), metrics

    keys = jax.random.split(key, x.shape[0])
    (params, opt_state), metrics = jax.lax.scan(step, (params, opt_state), (x, w, keys))
    return params, opt_state, jax.tree.map(jnp.mean, metrics)

  return jax.jit(
    epoch,
    in_shardings=(replicated, replicated, batches, batches, replicated),
    out_shardings=(replicated, replicated, replicated),
  )


def encoder_gradient(model: MECQuantizer, x, weights, key, cfg: LossWeights) -> jax.Array:
  """Frobenius norm of d(loss)/d(encoder kernel) on one batch (for checks and tests)."""
  graphdef, params = nnx.split(model, nnx.Param)
  return _encoder_gradient(graphdef, cfg, params, x, weights, key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _encoder_gradient(graphdef, cfg: LossWeights, params, x, weights, key) -> jax.Array:
  loss_fn = reference_loss if cfg.reference else mec_loss

  def objective(params):
    return loss_fn(nnx.merge(graphdef, params), x, weights, key, cfg)[0]

  grads = jax.grad(objective)(params)
  return jnp.linalg.norm(grads["encoder"]["kernel"][...])
