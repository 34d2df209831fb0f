"""Trains an `MECQuantizer` on one (normalized) table and returns every row's codes.

Steps: hold out a random slice of rows; start the codebooks from weighted k-means on each
sub-space of ``z = enc(x)`` (MEC) or from U(-1/K, 1/K) (``reference``); run epochs of shuffled
minibatches (one jitted ``lax.scan`` per epoch); after each epoch measure the held-out weighted
reconstruction error of the hard path ``dec(q(enc(x)))``; stop after ``patience`` epochs without
improvement and keep the best parameters (the k-means start counts as epoch 0, so training can
only be kept when it helps); finally encode every row, unweighted.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mec_jax.compression import pq
from mec_jax.compression.autoencoder import (
  LossWeights,
  MECQuantizer,
  make_optimizer,
  make_train_epoch,
)
from mec_jax.compression.mesh import auto_mesh, round_up
from mec_jax.compression.settings import QuantizeSettings

# The released code repeats each row w_v times; past this many repeated rows per epoch we draw
# that many rows with probability proportional to w_v instead (same distribution, bounded memory).
MAX_REPEATED_ROWS = 1 << 25
_ENCODE_CHUNK = 16384


# Loss weights hard-wired in the released script (``--regularization_weight`` default and
# ``train_model(contrastive_weight=...)``); `reference` uses them instead of lambda_bal/lambda_con.
REFERENCE_REGULARIZATION_WEIGHT = 1e-4
REFERENCE_CONTRASTIVE_WEIGHT = 2e-3


def loss_weights(settings: QuantizeSettings) -> LossWeights:
  """The static loss configuration a variant trains with.

  ``reference`` keeps the released loss weights (its penalty has no gradient anyway), so it
  reproduces that code whatever MEC's lambdas are tuned to; ``lambda_rec`` and the schedule
  (learning rate, batch size, epochs) still come from ``settings``.
  """
  if settings.variant == "reference":
    return LossWeights(
      rec=settings.lambda_rec,
      vq=0.0,
      bal=REFERENCE_REGULARIZATION_WEIGHT,
      con=REFERENCE_CONTRASTIVE_WEIGHT,
      reference=True,
    )
  return LossWeights(
    rec=settings.lambda_rec,
    vq=settings.lambda_vq,
    bal=0.0 if settings.variant == "no_balance" else settings.lambda_bal,
    con=0.0 if settings.variant == "no_contrastive" else settings.lambda_con,
    commitment=settings.commitment,
    balance_temperature=settings.balance_temperature,
    contrastive_temperature=settings.contrastive_temperature,
    num_negatives=settings.num_negatives,
  )


def epoch_batches(
  rng: np.random.Generator,
  train_rows: np.ndarray,
  weights: np.ndarray,
  batch_size: int,
  mode: str,
) -> tuple[np.ndarray, np.ndarray]:
  """One epoch of row ids and loss weights, ``[steps, batch_size]`` each.

  Modes: ``"weighted"`` (each row once, shuffled, loss weighted by w_v); ``"sampled"`` (as many
  rows drawn with probability proportional to w_v, unweighted loss); ``"repeated"`` (the released
  code: row v repeated w_v times, shuffled, unweighted). The last batch is padded with weight 0.
  """
  if mode == "weighted":
    rows = rng.permutation(train_rows)
    row_w = weights[rows]
  elif mode == "sampled" or (mode == "repeated" and weights[train_rows].sum() > MAX_REPEATED_ROWS):
    size = train_rows.size if mode == "sampled" else MAX_REPEATED_ROWS
    p = weights[train_rows] / weights[train_rows].sum()
    rows = rng.choice(train_rows, size=size, p=p)
    row_w = np.ones(size, np.float32)
  elif mode == "repeated":
    rows = rng.permutation(np.repeat(train_rows, weights[train_rows].astype(np.int64)))
    row_w = np.ones(rows.size, np.float32)
  else:
    raise ValueError(f"unknown batching mode {mode!r}")
  padded = round_up(rows.size, batch_size)
  idx = np.zeros(padded, np.int32)
  idx[: rows.size] = rows
  w = np.zeros(padded, np.float32)
  w[: rows.size] = row_w
  return idx.reshape(-1, batch_size), w.reshape(-1, batch_size)


@functools.partial(jax.jit, static_argnums=0)
def _holdout_error(graphdef, params, x, w):
  """Weighted ``||dec(q(enc(x))) - x||^2`` over chunked rows ``x [C, chunk, d]``, ``w [C, chunk]``."""
  model = nnx.merge(graphdef, params)

  def chunk_error(xw):
    xb, wb = xw
    return jnp.sum(wb * jnp.sum((model(xb).x_hat - xb) ** 2, -1))

  return jax.lax.map(chunk_error, (x, w)).sum() / jnp.maximum(w.sum(), 1e-30)


def _chunked(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  chunk = min(_ENCODE_CHUNK, max(1, x.shape[0]))
  padded = round_up(x.shape[0], chunk)
  xp = np.zeros((padded, x.shape[1]), np.float32)
  xp[: x.shape[0]] = x
  wp = np.zeros(padded, np.float32)
  wp[: x.shape[0]] = w
  return xp.reshape(-1, chunk, x.shape[1]), wp.reshape(-1, chunk)


@functools.partial(jax.jit, static_argnums=0)
def _encode_rows(graphdef, params, x):
  model = nnx.merge(graphdef, params)
  return jax.lax.map(lambda xb: model.quantize(model.encode(xb))[0], x)


def _key_bits(key: jax.Array) -> np.ndarray:
  """A numpy seed from a JAX key (typed or raw), for host-side shuffling."""
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key).ravel()


def init_quantizer(
  key: jax.Array, x: np.ndarray, weights: np.ndarray, settings: QuantizeSettings, mesh: Mesh
) -> MECQuantizer:
  """A quantizer for ``x [V, d]``; MEC's codebooks from weighted k-means on sub-spaces of z."""
  reference = settings.variant == "reference"
  model_key, kmeans_key = jax.random.split(key)
  model = MECQuantizer(
    x.shape[1],
    settings.resolved_latent_dim(x.shape[1]),
    settings.num_subspaces,
    settings.codebook_size,
    straight_through=not reference,
    init="torch" if reference else "orthogonal",
    rngs=nnx.Rngs(params=model_key),
  )
  if not reference:
    z = np.asarray(model.encode(jnp.asarray(x)))
    codebooks, _ = pq.train_pq(
      kmeans_key,
      z,
      weights,
      settings.num_subspaces,
      settings.codebook_size,
      settings.kmeans_iters,
      mesh=mesh,
    )
    model.codebooks[...] = jnp.asarray(np.asarray(codebooks))
  return model


def train_quantizer(
  key: jax.Array,
  x: np.ndarray,
  weights: np.ndarray,
  settings: QuantizeSettings,
  *,
  mesh: Mesh,
  progress: Callable[[int, dict], None] | None = None,
) -> tuple[np.ndarray, dict]:
  """Trains on ``x [V, d]`` (already normalized) with row weights ``[V]``.

  Returns:
    ``(codes int32 [V, M], info)`` where ``info`` has the per-epoch history, the epoch kept,
    the held-out error of the hard path (in ``x``'s units) and training throughput.
  """
  num_rows = x.shape[0]
  init_key, split_key, train_key = jax.random.split(key, 3)
  rng = np.random.default_rng(_key_bits(split_key))
  perm = rng.permutation(num_rows)
  num_holdout = int(round(settings.holdout_fraction * num_rows))
  num_holdout = min(num_holdout, num_rows - settings.codebook_size)
  holdout_rows, train_rows = (
    np.sort(perm[: max(num_holdout, 0)]),
    np.sort(perm[max(num_holdout, 0) :]),
  )
  # With nothing held out, early stopping watches the training rows.
  watch_rows = holdout_rows if holdout_rows.size else train_rows

  model = init_quantizer(init_key, x[train_rows], weights[train_rows], settings, mesh)
  graphdef, params = nnx.split(model, nnx.Param)
  tx = make_optimizer(settings.learning_rate)
  gspmd = auto_mesh(mesh)
  replicated = NamedSharding(gspmd, P())
  params = jax.device_put(params, replicated)
  opt_state = jax.device_put(tx.init(params), replicated)
  table = jax.device_put(jnp.asarray(x), replicated)
  run_epoch = make_train_epoch(graphdef, tx, loss_weights(settings), gspmd)
  holdout_error = functools.partial(_holdout_error, graphdef)
  watch_x, watch_w = _chunked(x[watch_rows], weights[watch_rows])

  mode = "weighted"
  if settings.variant == "reference":
    mode = "repeated"
  elif settings.weighted_sampling:
    mode = "sampled"
  batch_size = round_up(settings.batch_size, mesh.size)

  best_error = float(holdout_error(params, watch_x, watch_w))
  best_params, best_epoch, stale = params, 0, 0
  history = [{"epoch": 0, "holdout_error": best_error}]
  rows_seen, train_seconds = 0, 0.0
  for epoch in range(1, settings.epochs + 1):
    idx, w = epoch_batches(rng, train_rows, weights, batch_size, mode)
    start = time.perf_counter()
    params, opt_state, metrics = run_epoch(
      params, opt_state, table, idx, w, jax.random.fold_in(train_key, epoch)
    )
    metrics = {name: float(value) for name, value in metrics.items()}
    if epoch > 1:  # the first epoch includes compilation
      train_seconds += time.perf_counter() - start
      rows_seen += int((w > 0).sum())
    error = float(holdout_error(params, watch_x, watch_w))
    metrics["holdout_error"] = error
    history.append({"epoch": epoch, **metrics})
    if progress is not None:
      progress(epoch - 1, metrics)  # 0-based index of the epoch just finished
    if error < best_error:
      best_error, best_params, best_epoch, stale = error, params, epoch, 0
    else:
      stale += 1
      if stale >= settings.patience:
        break

  chunks, _ = _chunked(x, np.zeros(num_rows, np.float32))
  codes = np.asarray(_encode_rows(graphdef, best_params, chunks)).reshape(
    -1, settings.num_subspaces
  )
  info = {
    "epochs_run": len(history) - 1,
    "best_epoch": best_epoch,
    "holdout_rows": int(holdout_rows.size),
    "train_rows": int(train_rows.size),
    "holdout_error_normalized": best_error,
    "history": history,
    "train_rows_per_second": rows_seen / train_seconds if train_seconds > 0 else None,
  }
  return codes[:num_rows], info
