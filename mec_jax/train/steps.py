"""Pure, jitted train and eval steps over a 1-D ``('data',)`` device mesh.

A model is split once into its graph definition and three states: ``params`` (``nnx.Param``,
the only thing the optimizer sees), ``rng_state`` (dropout streams, reseeded every step from
``fold_in(dropout_key, step)`` so masks depend only on the seed and the step, which makes a
resumed run replay exactly) and ``other`` (everything else: batch-norm statistics, integer codes
of `CodebookEmbed`, ...; carried and checkpointed, never optimized).

Data parallelism: the batch is sharded on the ``data`` axis and the state replicated; ``jax.jit``
inserts the gradient all-reduce (and batch-norm cross-device statistics), so a step on N devices
computes the same update as on one.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


class TrainState(flax.struct.PyTreeNode):
  """Everything a train step updates (and a checkpoint saves).

  Attributes:
    step: int32 scalar, number of optimizer steps taken.
    params: ``nnx.Param`` state of the model.
    other: the model's non-parameter, non-RNG state (batch stats, codes, ...).
    opt_state: optax state over ``params``.
  """

  step: jax.Array
  params: nnx.State
  other: nnx.State
  opt_state: optax.OptState


def split_model(model: nnx.Module):
  """``(graphdef, params, rng_state, other)`` of ``model`` in its current train/eval mode."""
  return nnx.split(model, nnx.Param, nnx.RngState, ...)


# --- optimizer ------------------------------------------------------------------------------------


def param_labels(params, lr_overrides: Mapping[str, float]):
  """Labels each parameter with the first key of ``lr_overrides`` found in its path, else "default".

  Paths are "/"-joined attribute names, e.g. ``embedding/tables/3/codebooks/value``.
  """

  def label(path, _):
    text = jax.tree_util.keystr(path, simple=True, separator="/")
    return next((key for key in lr_overrides if key in text), "default")

  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(
  learning_rate: float,
  *,
  grad_clip_norm: float = 10.0,
  weight_decay: float = 0.0,
  lr_overrides: Mapping[str, float] | None = None,
) -> optax.GradientTransformation:
  """Adam (AdamW when ``weight_decay > 0``) after global-norm clipping, with an lr scale knob.

  The last element is ``inject_hyperparams(scale)``: its ``step_size`` multiplies every learning
  rate, so reducing the lr on a plateau (`set_lr_scale`) changes a value, not the compiled step.

  Args:
    learning_rate: base Adam learning rate.
    grad_clip_norm: clip gradients to this global L2 norm (0 disables).
    weight_decay: decoupled weight decay (AdamW) on every parameter.
    lr_overrides: ``{path substring: learning rate}``; parameters whose path contains the
      substring use that rate (first matching key wins), e.g. ``{"codebooks": 1e-2}``.
      A rate of 0 (here or as ``learning_rate``) freezes those parameters.
  """
  for key, lr in {"default": learning_rate, **(lr_overrides or {})}.items():
    if not lr >= 0:
      raise ValueError(f"learning rate for {key!r} must be >= 0 (0 freezes), got {lr}")

  def adam(lr):
    if lr == 0:  # Frozen: no update and no Adam moments for these parameters.
      return optax.set_to_zero()
    parts = [optax.scale_by_adam()]
    if weight_decay > 0:
      parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale(-lr))
    return optax.chain(*parts)

  if lr_overrides:
    overrides = dict(lr_overrides)
    if "default" in overrides:
      raise ValueError("lr_overrides: 'default' is reserved; set learning_rate instead")
    transforms = {"default": adam(learning_rate)} | {k: adam(v) for k, v in overrides.items()}
    inner = optax.multi_transform(transforms, lambda params: param_labels(params, overrides))
  else:
    inner = adam(learning_rate)
  clip = optax.clip_by_global_norm(grad_clip_norm) if grad_clip_norm > 0 else optax.identity()
  return optax.chain(clip, inner, optax.inject_hyperparams(optax.scale)(step_size=1.0))


def log_lr_overrides(params, lr_overrides: Mapping[str, float] | None) -> dict[str, int]:
  """Counts parameters per override key (warns about keys that match nothing)."""
  if not lr_overrides:
    return {}
  labels = jax.tree.leaves(param_labels(params, lr_overrides))
  counts = {key: labels.count(key) for key in lr_overrides}
  for key, count in counts.items():
    if count == 0:
      logging.warning("lr_overrides: no parameter path contains %r", key)
  return counts


def lr_scale(opt_state) -> float:
  """Current learning-rate multiplier of an optimizer from `make_optimizer`."""
  return float(opt_state[-1].hyperparams["step_size"])


def set_lr_scale(opt_state, scale: float):
  """Returns ``opt_state`` with the learning-rate multiplier set to ``scale``."""
  inject = opt_state[-1]
  old = inject.hyperparams["step_size"]
  value = jax.device_put(jnp.asarray(scale, old.dtype), old.sharding)
  inject = inject._replace(hyperparams={**inject.hyperparams, "step_size": value})
  return (*opt_state[:-1], inject)


def init_train_state(params: nnx.State, other: nnx.State, tx) -> TrainState:
  return TrainState(
    step=jnp.zeros((), jnp.int32), params=params, other=other, opt_state=tx.init(params)
  )


# --- mesh -----------------------------------------------------------------------------------------


def data_mesh(devices=None) -> jax.sharding.Mesh:
  """1-D ``('data',)`` mesh over ``devices`` (default: all devices; one device = trivial mesh)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh(
    (len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
  )


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(batch: Mapping[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """Per-process host batch -> global arrays sharded on ``data`` (leading axis)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


# --- steps ----------------------------------------------------------------------------------------


def bce_with_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean binary cross-entropy of ``logits [batch]`` against 0/1 ``labels [batch]``."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))


def make_train_step(
  graphdef,
  rng_state: nnx.State,
  tx: optax.GradientTransformation,
  mesh,
  *,
  dropout_key: jax.Array,
  embedding_regularizer: float = 0.0,
):
  """Builds ``step(state, batch) -> (state, loss)``, jitted over ``mesh``.

  Args:
    graphdef: graph definition of the model in train mode (from `split_model`).
    rng_state: the model's RNG state (structure only; keys are reseeded per step).
    tx: optimizer from `make_optimizer`.
    mesh: 1-D data mesh.
    dropout_key: base key; step ``t`` uses ``fold_in(dropout_key, t)``.
    embedding_regularizer: weight of ``mean_batch Σ_{f,d} e²`` on the looked-up embeddings
      (needs ``model.embedding``).

  Returns:
    The jitted step; ``loss`` is the un-regularized mean BCE of the batch (float32 scalar).
  """

  def loss_fn(params, state: TrainState, batch):
    # copy=True: fresh Variables of this trace, which reseed and batch norm may mutate.
    model = nnx.merge(graphdef, params, rng_state, state.other, copy=True)
    nnx.reseed(model, dropout=jax.random.fold_in(dropout_key, state.step))
    logits = model(batch["ids"], batch["values"])
    loss = bce_with_logits(logits, batch["label"])
    total = loss
    if embedding_regularizer > 0:
      emb = model.embedding(batch["ids"], batch["values"])
      total = total + embedding_regularizer * jnp.mean(jnp.sum(jnp.square(emb), axis=(1, 2)))
    _, _, _, other = split_model(model)
    return total, (loss, other)

  def step(state: TrainState, batch):
    grads, (loss, other) = jax.grad(loss_fn, has_aux=True)(state.params, state, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(step=state.step + 1, params=params, other=other, opt_state=opt_state)
    return new_state, loss

  return jax.jit(
    step,
    in_shardings=(replicated(mesh), batch_sharding(mesh)),
    out_shardings=(replicated(mesh), replicated(mesh)),
    donate_argnums=0,
  )


def make_eval_step(graphdef, rng_state: nnx.State, mesh):
  """Builds ``eval_step(params, other, batch) -> (probs, label, mask)`` jitted over ``mesh``.

  ``graphdef`` must come from the model in eval mode (dropout off, running batch statistics).
  Outputs stay sharded on ``data``; ``mask`` is all ones when the batch has none.
  """

  def eval_step(params, other, batch):
    model = nnx.merge(graphdef, params, rng_state, other, copy=True)
    probs = jax.nn.sigmoid(model(batch["ids"], batch["values"]).astype(jnp.float32))
    mask = batch.get("mask", jnp.ones_like(batch["label"]))
    return probs, batch["label"], mask

  return jax.jit(
    eval_step,
    in_shardings=(replicated(mesh), replicated(mesh), batch_sharding(mesh)),
    out_shardings=batch_sharding(mesh),
  )
