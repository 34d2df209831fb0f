"""Trains an `MECQuantizer` on one (normalized) table and returns every row's codes.

Steps: hold out a bounded random sample of rows; start the codebooks from weighted k-means on
each sub-space of ``z = enc(x)`` over a bounded sample (MEC) or from U(-1/K, 1/K)
(``reference``); run epochs of at most ``rows_per_epoch`` rows, drawn afresh each epoch and
gathered on the host (one jitted ``lax.scan`` per epoch; the balance term's soft assignment is
per batch, never ``[rows, K]``); after each epoch measure what would SHIP (`selection.py`: the
held-out weighted table-space error of the codebooks refit from the codes, and code usage) and
keep the epoch `selection.improves` prefers (default: the most even code usage at most 1% above
the held-out error of the k-means start, which is epoch 0, so training is kept only when it is
more balanced at about the start's error); stop
after ``patience`` epochs without a new kept epoch; finally encode every row in streamed chunks.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mec_jax.compression import pq, selection
from mec_jax.compression.autoencoder import (
  LossWeights,
  MECQuantizer,
  make_optimizer,
  make_train_epoch,
)
from mec_jax.compression.mesh import auto_mesh, round_up
from mec_jax.compression.settings import QuantizeSettings
from mec_jax.compression.table import code_dtype

# The released code repeats each row w_v times; past this many repeated rows per epoch we draw
# that many rows with probability proportional to w_v instead (same distribution, bounded memory).
MAX_REPEATED_ROWS = 1 << 25
_ENCODE_CHUNK = 16384
# Bounded samples: held-out rows for early stopping, training rows the probe refits from, and
# rows the k-means start is fit on (~1000 per code at K=256).
HOLDOUT_MAX_ROWS = 1 << 16
REFIT_SAMPLE_ROWS = 1 << 18
KMEANS_INIT_ROWS = 1 << 18


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
  rows_per_epoch: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
  """One epoch of row ids and loss weights, ``[steps, batch_size]`` each.

  Modes: ``"weighted"`` (each row once, shuffled, loss weighted by w_v); ``"sampled"`` (as many
  rows drawn with probability proportional to w_v, unweighted loss); ``"repeated"`` (the released
  code: row v repeated w_v times, shuffled, unweighted). ``rows_per_epoch > 0`` caps the epoch:
  ``weighted`` then takes a uniform subset without replacement (still weighted, so unbiased),
  the other modes draw that many rows by popularity. The last batch is padded with weight 0.
  """
  if mode not in ("weighted", "sampled", "repeated"):
    raise ValueError(f"unknown batching mode {mode!r}")
  cap = rows_per_epoch if rows_per_epoch > 0 else None
  draws = None  # rows to draw by popularity, if this epoch samples
  if mode == "sampled":
    draws = cap or train_rows.size
  elif mode == "repeated":
    limit = min(cap or MAX_REPEATED_ROWS, MAX_REPEATED_ROWS)
    draws = limit if weights[train_rows].sum() > limit else None
  if draws is not None:
    p = weights[train_rows] / weights[train_rows].sum()
    rows = rng.choice(train_rows, size=draws, p=p)
    row_w = np.ones(draws, np.float32)
  elif mode == "repeated":
    rows = rng.permutation(np.repeat(train_rows, weights[train_rows].astype(np.int64)))
    row_w = np.ones(rows.size, np.float32)
  else:
    rows = rng.permutation(train_rows)[:cap]
    row_w = weights[rows]
  padded = round_up(rows.size, batch_size)
  idx = np.zeros(padded, np.int32)
  idx[: rows.size] = rows
  w = np.zeros(padded, np.float32)
  w[: rows.size] = row_w
  return idx.reshape(-1, batch_size), w.reshape(-1, batch_size)


@functools.partial(jax.jit, static_argnums=0)
def _encode_chunk(graphdef, params, x):
  model = nnx.merge(graphdef, params)
  return model.quantize(model.encode(x))[0]


def encode_rows(
  graphdef,
  params,
  x: np.ndarray,
  chunk: int = _ENCODE_CHUNK,
  transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
  """``[V, M]`` codes of ``x [V, d]``, streamed in fixed-size chunks (one compilation; only
  one chunk at a time on the device), in the smallest dtype that holds K. ``transform`` is
  applied to each chunk of rows on the host first (normalization without a normalized copy)."""
  model = nnx.merge(graphdef, params)
  out = np.empty((x.shape[0], model.num_subspaces), code_dtype(model.codebook_size))
  chunk = min(chunk, max(1, x.shape[0]))
  buffer = np.zeros((chunk, x.shape[1]), np.float32)
  for start in range(0, x.shape[0], chunk):
    rows = min(chunk, x.shape[0] - start)
    block = x[start : start + rows]
    buffer[:rows] = block if transform is None else transform(block)
    buffer[rows:] = 0.0
    out[start : start + rows] = np.asarray(_encode_chunk(graphdef, params, buffer))[:rows]
  return out


def _key_bits(key: jax.Array) -> np.ndarray:
  """A numpy seed from a JAX key (typed or raw), for host-side shuffling."""
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key).ravel()


def init_quantizer(
  key: jax.Array, x: np.ndarray, weights: np.ndarray, settings: QuantizeSettings, mesh: Mesh
) -> MECQuantizer:
  """A quantizer for ``x [V, d]``; MEC's codebooks from weighted k-means on sub-spaces of z.

  Pass a bounded sample of rows: k-means runs on all of ``x``.
  """
  reference = settings.variant == "reference"
  model_key, kmeans_key = jax.random.split(key)
  model = MECQuantizer(
    x.shape[1],
    settings.resolved_latent_dim(x.shape[1]),
    settings.num_subspaces,
    settings.codebook_size,
    straight_through=not reference,
    init="torch" if reference else "orthogonal",
    encoder="dense" if reference else settings.encoder,
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


def _split(rng, num_rows: int, settings: QuantizeSettings) -> tuple[np.ndarray, np.ndarray]:
  """``(held-out rows, training rows)``: a bounded random held-out sample, the rest."""
  num_holdout = int(round(settings.holdout_fraction * num_rows))
  num_holdout = max(min(num_holdout, HOLDOUT_MAX_ROWS, num_rows - settings.codebook_size), 0)
  holdout = np.sort(rng.choice(num_rows, size=num_holdout, replace=False))
  train = np.ones(num_rows, bool)
  train[holdout] = False
  return holdout, np.flatnonzero(train)


def train_quantizer(
  key: jax.Array,
  x: np.ndarray,
  weights: np.ndarray,
  settings: QuantizeSettings,
  *,
  mesh: Mesh,
  progress: Callable[[int, dict], None] | None = None,
  error_scale: float = 1.0,
  name: str = "",
  normalize: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, dict]:
  """Trains on ``x [V, d]`` with row weights ``[V]``.

  Args:
    error_scale: factor that turns squared errors in ``x``'s units into the caller's (the
      table's), for the figures in ``info``.
    name: field name for the log lines.
    normalize: map applied to every block of rows taken from ``x`` (samples, epoch batches,
      the final encode), so the quantizer trains on ``normalize(x)`` without a normalized copy
      of the table; None trains on ``x`` as given.

  Returns:
    ``(codes [V, M], info)``: ``info`` has the per-epoch history (losses, ``shipped_error``,
    ``usage_entropy``), ``best_epoch`` (0: the k-means start was kept), ``epochs_run``,
    ``stop_reason``, ``kmeans_error`` and ``shipped_error`` (held-out error of the shipped refit
    at epoch 0 and at the kept epoch), ``trained_beat_kmeans`` (a trained epoch won under
    ``settings.selection``), ``selection`` and training throughput.
  """
  num_rows = x.shape[0]

  def take(rows: np.ndarray) -> np.ndarray:
    block = x[rows]
    return block if normalize is None else normalize(block)

  init_key, split_key, train_key = jax.random.split(key, 3)
  rng = np.random.default_rng(_key_bits(split_key))
  holdout_rows, train_rows = _split(rng, num_rows, settings)
  # With nothing held out, early stopping watches (a sample of) the training rows.
  refit_rows = selection.sample_rows(rng, train_rows, REFIT_SAMPLE_ROWS)
  watch_rows = holdout_rows if holdout_rows.size else refit_rows
  probe = selection.Probe(
    take(refit_rows), weights[refit_rows], take(watch_rows), weights[watch_rows]
  )
  init_rows = selection.sample_rows(rng, train_rows, KMEANS_INIT_ROWS)

  model = init_quantizer(init_key, take(init_rows), weights[init_rows], settings, mesh)
  graphdef, params = nnx.split(model, nnx.Param)
  tx = make_optimizer(settings.learning_rate)
  gspmd = auto_mesh(mesh)
  replicated = NamedSharding(gspmd, P())
  params = jax.device_put(params, replicated)
  opt_state = jax.device_put(tx.init(params), replicated)
  run_epoch = make_train_epoch(graphdef, tx, loss_weights(settings), gspmd)

  def measure(params) -> dict:
    refit_codes = encode_rows(graphdef, params, probe.refit_x)
    eval_codes = encode_rows(graphdef, params, probe.eval_x)
    return selection.shipped_metrics(probe, refit_codes, eval_codes, settings.codebook_size)

  mode = "weighted"
  if settings.variant == "reference":
    mode = "repeated"
  elif settings.weighted_sampling:
    mode = "sampled"
  batch_size = round_up(settings.batch_size, mesh.size)

  start_metrics = measure(params)
  start_error = start_metrics["shipped_error"]
  best_metrics, best_params, best_epoch, stale = start_metrics, params, 0, 0
  history = [{"epoch": 0, **start_metrics}]
  rows_seen, train_seconds = 0, 0.0
  stop_reason = "epochs=0: nothing trained" if settings.epochs == 0 else "max_epochs"
  criterion = (
    "held-out shipped error"
    if settings.selection == "error"
    else f"code usage within {settings.selection_tolerance:g} of the k-means start's error"
  )
  for epoch in range(1, settings.epochs + 1):
    idx, w = epoch_batches(rng, train_rows, weights, batch_size, mode, settings.rows_per_epoch)
    batches = take(idx.ravel()).reshape(*idx.shape, x.shape[1])
    start = time.perf_counter()
    params, opt_state, metrics = run_epoch(
      params, opt_state, batches, w, jax.random.fold_in(train_key, epoch)
    )
    metrics = {name: float(value) for name, value in metrics.items()}
    if epoch > 1:  # the first epoch includes compilation
      train_seconds += time.perf_counter() - start
      rows_seen += int((w > 0).sum())
    metrics.update(measure(params))
    history.append({"epoch": epoch, **metrics})
    if progress is not None:
      progress(epoch - 1, metrics)  # 0-based index of the epoch just finished
    if not math.isfinite(metrics["shipped_error"]):
      stop_reason = f"non-finite shipped error at epoch {epoch}"
      break
    if selection.improves(
      metrics, best_metrics, start_error, settings.selection, settings.selection_tolerance
    ):
      best_metrics, best_params, best_epoch, stale = metrics, params, epoch, 0
    else:
      stale += 1
      if stale >= settings.patience:
        stop_reason = f"patience: no better epoch by {criterion} for {stale} epochs"
        break
  epochs_run = len(history) - 1
  if stop_reason == "max_epochs":
    stop_reason = f"max_epochs: quantize.epochs={settings.epochs} reached"
  logging.info(
    "quantize %s: stopped after %d epoch(s) (%s); kept epoch %d, held-out shipped error "
    "%.5g vs %.5g at the k-means start, usage entropy %.4f vs %.4f",
    name or "table",
    epochs_run,
    stop_reason,
    best_epoch,
    best_metrics["shipped_error"] * error_scale,
    start_error * error_scale,
    best_metrics["usage_entropy"],
    start_metrics["usage_entropy"],
  )

  codes = encode_rows(graphdef, best_params, x, transform=normalize)
  info = {
    "epochs_run": epochs_run,
    "best_epoch": best_epoch,
    "stop_reason": stop_reason,
    "kmeans_error": start_error * error_scale,
    "shipped_error": best_metrics["shipped_error"] * error_scale,
    "selection": settings.selection,
    "trained_beat_kmeans": best_epoch > 0,
    "holdout_rows": int(watch_rows.size),
    "train_rows": int(train_rows.size),
    "history": history,
    "train_rows_per_second": rows_seen / train_seconds if train_seconds > 0 else None,
  }
  return codes, info
