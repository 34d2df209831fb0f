"""Pure, jitted train and eval steps over a ``('data',)`` or ``('data', 'model')`` device mesh.

A model is split once into its graph definition and three states: ``params`` (``nnx.Param``,
the only thing the optimizer sees), ``rng_state`` (dropout streams, reseeded every step from
``fold_in(dropout_key, step)`` so masks depend only on the seed and the step, which makes a
resumed run replay exactly) and ``other`` (everything else: batch-norm statistics, integer codes
of `CodebookEmbed`, ...; carried and checkpointed, never optimized).

Data parallelism: the batch is sharded on the ``data`` axis and the state replicated; ``jax.jit``
inserts the gradient all-reduce (and batch-norm cross-device statistics), so a step on N devices
computes the same update as on one. `train_mesh` with ``train.model_axis_size`` k > 1 adds a
second ``model`` axis, shape (N/k, k): the batch is then split N/k ways (replicated across
``model``) and only the row sharding of the sparse tables uses ``model`` (`sparse.row_axes`).

Large tables (`mec_jax.train.sparse`) live outside ``params`` in ``TrainState.sparse``, row-sharded
over the mesh and updated row-wise. Gradient clipping then uses one global norm over the dense
gradients and the touched rows' gradients (the non-zero rows of the dense table gradient, so the
norm is the one a dense step would clip with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mec_jax.errors import ConfigError
from mec_jax.train import row_optimizers, sparse

DATA_AXIS = "data"
MODEL_AXIS = "model"


class TrainState(flax.struct.PyTreeNode):
  """Everything a train step updates (and a checkpoint saves).

  Attributes:
    step: int32 scalar, number of optimizer steps taken.
    params: ``nnx.Param`` state of the model.
    other: the model's non-parameter, non-RNG state (batch stats, codes, ...).
    opt_state: optax state over ``params``.
    sparse: row-sparse tables and their row-wise optimizer state, ``{name: {"tables": {...},
      "opt": {...}}}`` (`mec_jax.train.sparse`); empty when the model has none.
  """

  step: jax.Array
  params: nnx.State
  other: nnx.State
  opt_state: optax.OptState
  sparse: dict = flax.struct.field(default_factory=dict)


def split_model(model: nnx.Module):
  """``(graphdef, params, rng_state, other)`` of ``model`` in its current train/eval mode."""
  return nnx.split(model, nnx.Param, nnx.RngState, ...)


# --- optimizer ------------------------------------------------------------------------------------


def param_labels(params, lr_overrides: Mapping[str, float]):
  """Labels each parameter with the first key of ``lr_overrides`` found in its path, else "default".

  Paths are "/"-joined attribute names, e.g. ``embedding/tables/3/codebooks/value``.
  """

  def label(path, _):
    return override_key(jax.tree_util.keystr(path, simple=True, separator="/"), lr_overrides)

  return jax.tree_util.tree_map_with_path(label, params)


def override_key(path_text: str, lr_overrides: Mapping[str, float] | None) -> str:
  """The first key of ``lr_overrides`` contained in ``path_text``, else ``"default"``."""
  return next((key for key in lr_overrides or {} if key in path_text), "default")


def learning_rate_of(
  path_text: str, learning_rate: float, lr_overrides: Mapping[str, float] | None
) -> float:
  """The learning rate `make_optimizer` gives the parameter at ``path_text`` (0: frozen)."""
  key = override_key(path_text, lr_overrides)
  return learning_rate if key == "default" else float(lr_overrides[key])


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
  return float(lr_scale_array(opt_state))


def lr_scale_array(opt_state) -> jax.Array:
  """The multiplier as an array (jit-safe; the sparse tables' rates use it too)."""
  return opt_state[-1].hyperparams["step_size"]


def set_lr_scale(opt_state, scale: float):
  """Returns ``opt_state`` with the learning-rate multiplier set to ``scale``."""
  inject = opt_state[-1]
  old = inject.hyperparams["step_size"]
  # From host data on every process: a device_put of a local array onto a sharding that spans
  # several processes builds an array Orbax cannot save.
  host = np.asarray(scale, old.dtype)
  value = jax.make_array_from_callback(host.shape, old.sharding, lambda _: host)
  inject = inject._replace(hyperparams={**inject.hyperparams, "step_size": value})
  return (*opt_state[:-1], inject)


def init_train_state(params: nnx.State, other: nnx.State, tx, sparse=None) -> TrainState:
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    other=other,
    opt_state=tx.init(params),
    sparse=sparse or {},
  )


def init_sharded_state(
  params, other, tx, mesh, *, fields=(), sparse_optimizer=row_optimizers.DEFAULT_SPARSE_OPTIMIZER
):
  """The train state of a split model, placed on ``mesh``, with its sparse tables taken out.

  Args:
    params, other: from `split_model`.
    tx: optimizer from `make_optimizer` (it sees only the non-sparse parameters).
    mesh: device mesh.
    fields: `sparse.SparseField`s (from `sparse.find_sparse_fields`).
    sparse_optimizer: row-wise optimizer of the sparse tables.

  Returns:
    ``(state, shardings)``: sparse arrays row-sharded, everything else replicated.
  """
  params, tables = sparse.split_tables(params, fields, sparse.row_shards(mesh))
  state = init_train_state(
    params, other, tx, sparse.init_sparse_state(tables, fields, sparse_optimizer)
  )
  shardings = sparse.state_shardings(state, mesh)
  return jax.device_put(state, shardings), shardings


# --- mesh -----------------------------------------------------------------------------------------


def data_mesh(devices=None) -> jax.sharding.Mesh:
  """1-D ``('data',)`` mesh over ``devices`` (default: all devices; one device = trivial mesh)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh(
    (len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
  )


def train_mesh(model_axis_size: int = 1, devices=None) -> jax.sharding.Mesh:
  """The train mesh: `data_mesh` for ``model_axis_size`` 1, else ``('data', 'model')`` (N/k, k).

  Args:
    model_axis_size: k, ``train.model_axis_size``; must divide the device count.
    devices: default all devices.

  Raises:
    ConfigError: k does not divide the device count, or k > 1 with several processes (their
      batch slices follow a 1-D ``data`` axis).
  """
  devices = jax.devices() if devices is None else list(devices)
  if model_axis_size == 1:
    return data_mesh(devices)
  if model_axis_size < 1 or len(devices) % model_axis_size:
    raise ConfigError(
      f"train.model_axis_size={model_axis_size} must be >= 1 and divide the device count "
      f"({len(devices)})"
    )
  if jax.process_count() > 1:
    raise ConfigError(
      f"train.model_axis_size={model_axis_size} needs a single process (got "
      f"{jax.process_count()}); multi-process runs use the 1-D ('data',) mesh, set it to 1"
    )
  return jax.make_mesh(
    (len(devices) // model_axis_size, model_axis_size),
    (DATA_AXIS, MODEL_AXIS),
    axis_types=(jax.sharding.AxisType.Auto,) * 2,
    devices=devices,
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
  sparse_fields: Sequence[sparse.SparseField] = (),
  sparse_optimizer: str = row_optimizers.DEFAULT_SPARSE_OPTIMIZER,
  grad_clip_norm: float = 0.0,
  weight_decay: float = 0.0,
  state_sharding=None,
):
  """Builds ``step(state, batch) -> (state, loss)``, jitted over ``mesh``, state donated.

  Args:
    graphdef: graph definition of the model in train mode (from `split_model`).
    rng_state: the model's RNG state (structure only; keys are reseeded per step).
    tx: optimizer from `make_optimizer`.
    mesh: the train mesh (`train_mesh`).
    dropout_key: base key; step ``t`` uses ``fold_in(dropout_key, t)``.
    embedding_regularizer: weight of ``mean_batch Σ_{f,d} e²`` on the looked-up embeddings
      (needs ``model.embedding``).
    sparse_fields: the tables held in ``state.sparse`` (`sparse.find_sparse_fields`).
    sparse_optimizer: row-wise optimizer of those tables (`row_optimizers.SPARSE_OPTIMIZERS`).
    grad_clip_norm: with sparse fields, the global norm (dense + touched rows) to clip to; the
      optimizer's own clip then sees an already clipped dense gradient (0 disables).
    weight_decay: decoupled decay of the touched sparse rows.
    state_sharding: sharding tree of the state (`sparse.state_shardings`; default replicated).

  Returns:
    The jitted step; ``loss`` is the un-regularized mean BCE of the batch (float32 scalar).
  """
  sparse_fields = tuple(sparse_fields)
  trainable = tuple(f for f in sparse_fields if not f.frozen)

  def loss_fn(params, blocks, frozen_blocks, state: TrainState, batch):
    if sparse_fields:
      params = sparse.merge_tables(params, blocks | frozen_blocks, sparse_fields)
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
    uniqs, blocks = {}, {}
    if sparse_fields:
      uniqs, ids, blocks = sparse.gather_rows(
        sparse.tables_of(state.sparse), batch["ids"], sparse_fields
      )
      batch = {**batch, "ids": ids}
    train_blocks = {f.name: blocks[f.name] for f in trainable}
    frozen_blocks = {f.name: blocks[f.name] for f in sparse_fields if f.frozen}
    (grads, block_grads), (loss, other) = jax.grad(loss_fn, argnums=(0, 1), has_aux=True)(
      state.params, train_blocks, jax.lax.stop_gradient(frozen_blocks), state, batch
    )
    if trainable and grad_clip_norm > 0:
      norm = optax.tree.norm((grads, block_grads))
      factor = jnp.minimum(1.0, grad_clip_norm / jnp.maximum(norm, 1e-12))
      grads, block_grads = jax.tree.map(lambda g: g * factor, (grads, block_grads))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    sparse_state = sparse.apply_row_updates(
      state.sparse,
      uniqs,
      block_grads,
      trainable,
      sparse_optimizer,
      lr_scale_array(state.opt_state),
      weight_decay=weight_decay,
    )
    new_state = state.replace(
      step=state.step + 1, params=params, other=other, opt_state=opt_state, sparse=sparse_state
    )
    return new_state, loss

  state_sharding = replicated(mesh) if state_sharding is None else state_sharding
  return jax.jit(
    step,
    in_shardings=(state_sharding, batch_sharding(mesh)),
    out_shardings=(state_sharding, replicated(mesh)),
    donate_argnums=0,
  )


def make_eval_step(graphdef, rng_state: nnx.State, mesh, *, sparse_fields=()):
  """Builds ``eval_step(params, other, batch) -> (probs, label, mask)`` jitted over ``mesh``.

  ``graphdef`` must come from the model in eval mode (dropout off, running batch statistics).
  With ``sparse_fields``, ``params`` is the full state of `sparse.merge_tables` whose sparse
  tables may be padded and row-sharded: they keep their sharding and only the batch's rows are
  gathered. Outputs stay sharded on ``data``; ``mask`` is all ones when the batch has none.
  """
  sparse_fields = tuple(sparse_fields)

  def eval_step(params, other, batch):
    ids = batch["ids"]
    if sparse_fields:
      params, tables = sparse.split_tables(params, sparse_fields)
      _, ids, blocks = sparse.gather_rows(tables, ids, sparse_fields)
      params = sparse.merge_tables(params, blocks, sparse_fields)
    model = nnx.merge(graphdef, params, rng_state, other, copy=True)
    probs = jax.nn.sigmoid(model(ids, batch["values"]).astype(jnp.float32))
    mask = batch.get("mask", jnp.ones_like(batch["label"]))
    return probs, batch["label"], mask

  params_sharding = None if sparse_fields else replicated(mesh)  # None: as committed
  return jax.jit(
    eval_step,
    in_shardings=(params_sharding, replicated(mesh), batch_sharding(mesh)),
    out_shardings=batch_sharding(mesh),
  )
