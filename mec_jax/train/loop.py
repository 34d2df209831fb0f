"""`fit`: the training loop of stages A and C (DESIGN §3).

Adam with global-norm clipping, per-epoch validation on ``train.monitor`` (AUC − logloss by
default), lr × ``lr_decay`` on a plateau, early stopping after ``patience`` epochs without
improvement, then the best state is restored and the test split evaluated.

Run directory ``<workdir>/<name>/``::

  metrics.jsonl   one JSON object per line: train (every log_every_steps), valid (per epoch),
                  test (once), resume events
  checkpoints/    Orbax: the last 2 checkpoints (mid-epoch every checkpoint_every_steps, and
                  at each epoch end) + the best epoch's
  result.json     the `FitResult`, written when the run finishes

Calling `fit` again with the same run directory resumes a killed run at the batch after its
last checkpoint (same data order, same dropout masks), or, when ``result.json`` exists, restores
the best state into the model and returns the stored result without training.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping

import jax
import numpy as np
import optax
from absl import logging
from flax import nnx
from tqdm.auto import tqdm

from mec_jax import mesh as meshes
from mec_jax.data.loader import BatchLoader
from mec_jax.errors import ArtifactError
from mec_jax.train import distributed, sparse, steps
from mec_jax.train import metrics as metrics_lib
from mec_jax.train import optimizer as optim
from mec_jax.train.checkpoint import Checkpointer
from mec_jax.train.config import TrainConfig
from mec_jax.train.divergence import LossCheck, NonFiniteLossError
from mec_jax.train.evaluation import check_split, evaluate_split, evaluate_splits
from mec_jax.train.loop_state import LoopState
from mec_jax.train.metrics_log import MetricsLog
from mec_jax.train.result import FitResult, load_result, result_path, write_json_atomic

__all__ = [
  "FitResult",
  "NonFiniteLossError",
  "TrainConfig",
  "evaluate_splits",
  "fit",
  "load_result",
  "result_path",
]


@dataclasses.dataclass
class _Run:
  """What one `fit` call works with: settings, files, the compiled pieces and the state."""

  cfg: TrainConfig
  name: str
  run_dir: str
  mesh: jax.sharding.Mesh
  tables: sparse.SparseTables
  graphdef: nnx.GraphDef
  rng_state: nnx.State
  tx: optax.GradientTransformation
  shardings: object
  state: steps.TrainState
  checkpointer: Checkpointer

  def restore(self, step: int) -> tuple[steps.TrainState, dict]:
    return self.tables.restore(self.checkpointer, step, self.state)

  def check_kept(self, step: int, what: str) -> None:
    """Raises `ArtifactError` if checkpoint ``step`` (the one the run will restore) is gone.

    `Checkpointer` keeps it; only a run directory written by an older mec_jax (which could
    delete the best step on a rerun after a kill) or edited by hand lacks it.
    """
    available = self.checkpointer.all_steps()
    if step not in available:
      raise ArtifactError(
        f"{self.checkpointer.directory}: the checkpoint of {what} (step {step}) is missing "
        f"(available {available}), so this run cannot end on its best state; "
        f"delete {self.run_dir} to train it again"
      )


def _run_dir(workdir: str, name: str) -> str:
  if not name or os.sep in name:
    raise ValueError(f"fit: name must be a plain directory name, got {name!r}")
  return os.path.join(os.path.abspath(workdir), name)


def fit(
  model: nnx.Module,
  splits: Mapping[str, Mapping[str, np.ndarray]],
  *,
  train_config: TrainConfig,
  workdir: str,
  name: str = "pretrain",
  lr_overrides: Mapping[str, float] | None = None,
  mesh: jax.sharding.Mesh | None = None,
  on_step: Callable[[int], None] | None = None,
) -> FitResult:
  """Trains ``model`` in place; on return it holds the best validation state.

  Args:
    model: a backbone (``model(ids, values) -> logits [batch]``), e.g. from
      `mec_jax.models.build_model`.
    splits: ``{"train", "valid"[, "test"]}`` arrays in the batch format of `mec_jax.data.schema`.
    train_config: settings (`TrainConfig.from_config(config)`).
    workdir: run root; files go to ``<workdir>/<name>/``.
    name: run name (``"pretrain"``, ``"finetune"``, ...).
    lr_overrides: ``{parameter-path substring: learning rate}`` for parameters that need their
      own rate, e.g. ``{"codebooks": 1e-2}``; every other parameter uses ``learning_rate``.
      Plateau decay scales all rates alike, the sparse tables' too. Full `Embed` tables with
      ``>= train.sparse_min_rows`` rows train row-sparse (`mec_jax.train.sparse`) with
      ``train.sparse_optimizer``; a rate of 0 keeps such a table frozen, without state.
    mesh: train mesh (default: `steps.train_mesh` of ``train.model_axis_size`` over all
      devices; a given mesh wins over that key).
    on_step: called with the global step after every train step (tests use it to simulate a
      kill by raising).

  Returns:
    The `FitResult` (best-epoch validation metrics, test metrics of the restored best state,
    per-epoch history).

  Raises:
    ValueError: malformed splits or settings.
    NonFiniteLossError: the loss became NaN/inf (names the step and epoch).
  """
  run_dir = _run_dir(workdir, name)
  os.makedirs(run_dir, exist_ok=True)
  mesh = mesh or steps.train_mesh(train_config.model_axis_size)
  _check_inputs(model, splits, train_config, mesh)
  run = _setup(model, train_config, name, run_dir, lr_overrides, mesh)
  try:
    if os.path.exists(result_path(workdir, name)):
      return _finished(model, run, load_result(workdir, name))
    return _train(model, splits, run, on_step)
  finally:
    run.checkpointer.close()


def _check_inputs(model, splits, cfg: TrainConfig, mesh) -> None:
  for split in ("train", "valid"):
    if split not in splits:
      raise ValueError(f"fit: splits has no {split!r} split (got {sorted(splits)})")
  for split, arrays in splits.items():
    check_split(arrays, model, split)
  if cfg.batch_size % mesh.size:
    raise ValueError(
      f"train.batch_size={cfg.batch_size} must be a multiple of the {mesh.size} devices"
    )


def _setup(model, cfg: TrainConfig, name: str, run_dir: str, lr_overrides, mesh) -> _Run:
  """Splits the model, builds the optimizer and the sparse tables, places the state on ``mesh``."""
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  optim.log_lr_overrides(params, lr_overrides)
  fields = sparse.find_sparse_fields(
    model,
    min_rows=cfg.sparse_min_rows,
    rate_of_path=lambda path: optim.learning_rate_of(path, cfg.learning_rate, lr_overrides),
    sparse_learning_rate=cfg.sparse_learning_rate,
  )
  tables = sparse.SparseTables(fields, cfg.sparse_optimizer, mesh)
  if fields:
    logging.info("%s: row-sparse tables (%s): %s", name, cfg.sparse_optimizer, tables.describe())
  tx = optim.make_optimizer(
    cfg.learning_rate, weight_decay=cfg.weight_decay, lr_overrides=lr_overrides
  )
  state, shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer=cfg.sparse_optimizer
  )
  del params  # the sparse tables now live in state.sparse only
  checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"))
  return _Run(
    cfg, name, run_dir, mesh, tables, graphdef, rng_state, tx, shardings, state, checkpointer
  )


def _finished(model, run: _Run, result: FitResult) -> FitResult:
  """Restores a finished run's best state into ``model`` and returns its stored result."""
  run.check_kept(result.best_step, "the finished run's best epoch")
  try:
    state, _ = run.restore(result.best_step)
  except ArtifactError as err:
    # Damaged files, or Orbax's tree mismatch when the model or optimizer changed since.
    raise ArtifactError(
      f"{run.run_dir}: the finished run's checkpoint (step {result.best_step}) cannot be "
      f"restored: damaged files, or another model/optimizer ({err}); delete {run.run_dir} to "
      "retrain"
    ) from err
  run.tables.load_into_model(model, state)
  model.eval()
  logging.info(
    "%s: finished run found in %s; restored step %d", run.name, run.run_dir, result.best_step
  )
  return result


def _train(model, splits, run: _Run, on_step) -> FitResult:
  """Resumes or starts the epochs, then restores the best state and tests it."""
  log = MetricsLog(os.path.join(run.run_dir, "metrics.jsonl"))
  loop = _resume(run, log)
  loader = BatchLoader(
    splits["train"], run.cfg.batch_size, shuffle=True, seed=run.cfg.seed, drop_remainder=True
  )
  train_step, eval_step = _compile_steps(model, run)
  losses = LossCheck(run, loop, loader.num_batches)
  while loop.epoch < run.cfg.epochs and not loop.stopped:
    start = time.time()
    _train_epoch(run, loop, loader, train_step, losses, log, on_step)
    _end_epoch(run, loop, eval_step, splits["valid"], log, start)
  return _finish(model, splits, run, loop, eval_step, log)


def _resume(run: _Run, log: MetricsLog) -> LoopState:
  """The loop state of the latest checkpoint (and its train state into ``run``), else fresh."""
  fresh = LoopState(row_shards=run.tables.row_shards, lr_scale=optim.lr_scale(run.state.opt_state))
  latest = run.checkpointer.latest_step()
  if latest is None:
    return fresh
  run.state, saved = run.restore(latest)
  loop = LoopState.from_dict(saved)
  loop.row_shards = run.tables.row_shards  # the arrays are now padded for this mesh
  if loop.best_step is not None:
    run.check_kept(loop.best_step, f"step {latest}'s best epoch")
  logging.info(
    "%s: resuming from step %d (epoch %d, batch %d)", run.name, latest, loop.epoch, loop.next_batch
  )
  log.write("resume", step=latest, epoch=loop.epoch, next_batch=loop.next_batch)
  return loop


def _compile_steps(model, run: _Run):
  """``(train_step, eval_step)`` for this run's model, mesh and sparse tables."""
  cfg = run.cfg
  train_step = steps.make_train_step(
    run.graphdef,
    run.rng_state,
    run.tx,
    run.mesh,
    dropout_key=jax.random.fold_in(jax.random.key(cfg.seed), 1),
    embedding_regularizer=cfg.embedding_regularizer,
    embedding_l2=cfg.embedding_l2,
    net_l2=cfg.net_l2,
    sparse_fields=run.tables.fields,
    sparse_optimizer=cfg.sparse_optimizer,
    grad_clip_norm=cfg.grad_clip_norm,
    weight_decay=cfg.weight_decay,
    state_sharding=run.shardings,
  )
  model.eval()
  eval_graphdef = nnx.graphdef(model)
  model.train()
  eval_step = steps.make_eval_step(
    eval_graphdef, run.rng_state, run.mesh, sparse_fields=run.tables.fields
  )
  return train_step, eval_step


def _train_epoch(run: _Run, loop: LoopState, loader, train_step, losses, log, on_step) -> None:
  """The rest of the current epoch: steps, train logs, mid-epoch checkpoints."""
  cfg = run.cfg
  iterator = loader.iterator({"epoch": loop.epoch, "next_batch": loop.next_batch})
  bar = tqdm(
    total=loader.num_batches,
    initial=loop.next_batch,
    desc=f"{run.name} epoch {loop.epoch + 1}/{cfg.epochs}",
    disable=not (cfg.progress and distributed.is_writer()),
    leave=False,
  )
  tick, tick_step = time.time(), loop.step
  for batch in iterator:
    run.state, loss = train_step(run.state, meshes.shard_batch(batch, run.mesh))
    loop.step += 1
    losses.pending.append(loss)
    bar.update(1)
    if loop.step % cfg.log_every_steps == 0:
      mean_loss = losses.drain(loop.step)
      now = time.time()
      rate = (loop.step - tick_step) * cfg.batch_size / max(now - tick, 1e-9)
      tick, tick_step = now, loop.step
      bar.set_postfix(loss=f"{mean_loss:.4f}", samples_per_s=f"{rate:,.0f}")
      lr = cfg.learning_rate * loop.lr_scale
      log.write(
        "train", epoch=loop.epoch + 1, step=loop.step, loss=mean_loss, samples_per_s=rate, lr=lr
      )
    if cfg.checkpoint_every_steps and loop.step % cfg.checkpoint_every_steps == 0 and len(iterator):
      losses.drain(loop.step)
      loop.next_batch = iterator.get_state()["next_batch"]
      run.checkpointer.save(loop.step, run.state, loop.to_dict())
    if on_step is not None:
      on_step(loop.step)
  bar.close()
  losses.drain(loop.step)


def _end_epoch(run: _Run, loop: LoopState, eval_step, valid_split, log, start: float) -> None:
  """Validation, plateau decay / early stop, the epoch's record, and its checkpoint."""
  cfg = run.cfg
  params = run.tables.eval_params(run.state)
  valid = evaluate_split(
    eval_step, params, run.state.other, valid_split, cfg.eval_batch_size, run.mesh, "valid"
  )
  score = metrics_lib.monitor_score(valid, cfg.monitor)
  lr = cfg.learning_rate * loop.lr_scale  # the rate this epoch trained with
  improved = loop.judge(score, patience=cfg.patience, lr_decay=cfg.lr_decay)
  if not improved:
    opt_state = optim.set_lr_scale(run.state.opt_state, loop.lr_scale)
    run.state = run.state.replace(opt_state=opt_state)
  record = {
    "epoch": loop.epoch + 1,
    "step": loop.step,
    "train_loss": loop.mean_epoch_loss(),
    "valid_auc": valid["auc"],
    "valid_logloss": valid["logloss"],
    "score": score,
    "improved": improved,
    "lr": lr,
    "seconds": time.time() - start,
  }
  log.write("valid", **record)
  logging.info(
    "%s epoch %d: valid AUC %.5f logloss %.5f%s",
    run.name,
    loop.epoch + 1,
    valid["auc"],
    valid["logloss"],
    "" if improved else " (no improvement)",
  )
  loop.end_epoch(record)
  run.checkpointer.save(loop.step, run.state, loop.to_dict())


def _finish(model, splits, run: _Run, loop: LoopState, eval_step, log) -> FitResult:
  """Restores the best state into ``model``, tests it, writes ``result.json``."""
  best_state, _ = run.restore(loop.best_step)
  run.state = None  # its tables are released before the model takes the best state's
  run.tables.load_into_model(model, best_state)
  best = loop.best_record()
  test = {}
  if "test" in splits:
    params = run.tables.eval_params(best_state)
    test = evaluate_split(
      eval_step, params, best_state.other, splits["test"], run.cfg.eval_batch_size, run.mesh, "test"
    )
    log.write("test", step=loop.best_step, auc=test["auc"], logloss=test["logloss"])
  model.eval()
  result = FitResult(
    valid={"auc": best["valid_auc"], "logloss": best["valid_logloss"]},
    test=test,
    history=loop.history,
    best_epoch=loop.best_epoch,
    best_step=loop.best_step,
    steps=loop.step,
  )
  if distributed.is_writer():
    write_json_atomic(os.path.join(run.run_dir, "result.json"), result.to_dict())
  distributed.barrier(f"{run.name} result written")  # a rerun of any process then finds it
  return result
