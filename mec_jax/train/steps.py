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

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mec_jax.errors import ConfigError
from mec_jax.mesh import batch_sharding, data_mesh, data_model_mesh, replicated
from mec_jax.train import losses, row_optimizers, sparse
from mec_jax.train.optimizer import clip_by_global_norm, lr_scale_array


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
    tx: optimizer from `optimizer.make_optimizer` (it sees only the non-sparse parameters).
    mesh: device mesh.
    fields: `sparse.SparseField`s (from `sparse.find_sparse_fields`).
    sparse_optimizer: row-wise optimizer of the sparse tables.

  Returns:
    ``(state, shardings)``: sparse arrays row-sharded, everything else replicated.
  """
  tables = sparse.SparseTables(tuple(fields), sparse_optimizer, mesh)
  params, sparse_state = tables.split(params)
  state = init_train_state(params, other, tx, sparse_state)
  shardings = tables.shardings(state)
  return jax.device_put(state, shardings), shardings


# --- mesh ---


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
  return data_model_mesh(model_axis_size, devices)


# --- steps ---


def bce_with_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean binary cross-entropy of ``logits [batch]`` against 0/1 ``labels [batch]``."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))


def _penalties(model, batch, dense_params, touched, weights) -> list[jax.Array]:
  """The regularization terms of a batch (none when every weight is 0).

  Args:
    model: the merged model of this trace.
    batch: the batch (``ids`` already remapped into the gathered sparse blocks).
    dense_params: the parameters outside the sparse blocks.
    touched: field index -> unique ids the batch looks up in that row-sparse table.
    weights: ``(embedding_regularizer, embedding_l2, net_l2)`` as `make_train_step` takes them.
  """
  embedding_regularizer, embedding_l2, net_l2 = weights
  terms = []
  if embedding_regularizer > 0:
    emb = model.embedding(batch["ids"], batch["values"])
    terms.append(embedding_regularizer * jnp.mean(jnp.sum(jnp.square(emb), axis=(1, 2))))
  if embedding_l2 > 0:
    terms.append(losses.embedding_l2(embedding_l2, model.embedding, batch["ids"], touched))
  if net_l2 > 0:
    terms.append(losses.net_l2(net_l2, dense_params))
  return terms


def _split_blocks(blocks: dict, trainable: tuple[str, ...]) -> tuple[dict, dict]:
  """``(trainable blocks, frozen blocks)`` of the gathered sparse blocks, by table name."""
  train = {name: block for name, block in blocks.items() if name in trainable}
  return train, {name: block for name, block in blocks.items() if name not in trainable}


def make_train_step(
  graphdef,
  rng_state: nnx.State,
  tx: optax.GradientTransformation,
  mesh,
  *,
  dropout_key: jax.Array,
  embedding_regularizer: float = 0.0,
  embedding_l2: float = 0.0,
  net_l2: float = 0.0,
  sparse_fields: Sequence[sparse.SparseField] = (),
  sparse_optimizer: str = row_optimizers.DEFAULT_SPARSE_OPTIMIZER,
  grad_clip_norm: float = 0.0,
  weight_decay: float = 0.0,
  state_sharding=None,
):
  """Builds ``step(state, batch) -> (state, loss)``, jitted over ``mesh``, state donated.

  ``loss`` is the un-regularized mean BCE of the batch (float32 scalar).

  Args:
    graphdef: graph definition of the model in train mode (from `split_model`).
    rng_state: the model's RNG state (structure only; keys are reseeded per step).
    tx: optimizer from `optimizer.make_optimizer`.
    mesh: the train mesh (`train_mesh`).
    dropout_key: base key; step ``t`` uses ``fold_in(dropout_key, t)``.
    embedding_regularizer, embedding_l2, net_l2: penalty weights (`_penalties`): of
      ``mean_batch Σ_{f,d} e²`` on the looked-up embeddings; of ``(λ/2) Σ ||row||²`` over each
      unique row of a full table the batch touches, dense or row-sparse alike
      (`losses.embedding_l2`); of ``(λ/2) Σ ||θ||²`` outside ``model.embedding`` (`losses.net_l2`).
    sparse_fields: the tables held in ``state.sparse`` (`sparse.find_sparse_fields`).
    sparse_optimizer: row-wise optimizer of those tables (`row_optimizers.SPARSE_OPTIMIZERS`).
    grad_clip_norm: the global L2 norm (dense + touched sparse rows) gradients are clipped to
      (`optimizer.clip_by_global_norm`; 0 disables).
    weight_decay: decoupled decay of the touched sparse rows.
    state_sharding: sharding tree of the state (`sparse.state_shardings`; default replicated).
  """
  tables = sparse.SparseTables(tuple(sparse_fields), sparse_optimizer, mesh)
  trainable = tuple(f.name for f in tables.fields if not f.frozen)
  field_of = {f.name: f.field for f in tables.fields}
  weights = (embedding_regularizer, embedding_l2, net_l2)

  def loss_fn(params, blocks, frozen_blocks, state: TrainState, batch, uniqs):
    merged = tables.merge(params, blocks | frozen_blocks)
    # copy=True: fresh Variables of this trace, which reseed and batch norm may mutate.
    model = nnx.merge(graphdef, merged, rng_state, state.other, copy=True)
    nnx.reseed(model, dropout=jax.random.fold_in(dropout_key, state.step))
    logits = model(batch["ids"], batch["values"])
    loss = bce_with_logits(logits, batch["label"])
    touched = {field_of[name]: uniq for name, uniq in uniqs.items()}
    total = loss
    for term in _penalties(model, batch, params, touched, weights):
      total = total + term
    _, _, _, other = split_model(model)
    return total, (loss, other)

  def step(state: TrainState, batch):
    uniqs, ids, blocks = tables.gather(sparse.tables_of(state.sparse), batch["ids"])
    batch = {**batch, "ids": ids}
    train_blocks, frozen_blocks = _split_blocks(blocks, trainable)
    (grads, block_grads), (loss, other) = jax.grad(loss_fn, argnums=(0, 1), has_aux=True)(
      state.params, train_blocks, jax.lax.stop_gradient(frozen_blocks), state, batch, uniqs
    )
    grads, block_grads = clip_by_global_norm((grads, block_grads), grad_clip_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    scale = lr_scale_array(state.opt_state)
    sparse_state = tables.update(state.sparse, uniqs, block_grads, scale, weight_decay)
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
  tables = sparse.SparseTables(sparse_fields, row_optimizers.DEFAULT_SPARSE_OPTIMIZER, mesh)

  def eval_step(params, other, batch):
    params, full_tables = tables.take_out(params)
    _, ids, blocks = tables.gather(full_tables, batch["ids"])
    params = tables.merge(params, blocks)
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
