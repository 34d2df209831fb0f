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
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from absl import logging
from flax import nnx
from tqdm.auto import tqdm

from mec_jax import mesh as meshes
from mec_jax.data.loader import BatchLoader
from mec_jax.errors import ArtifactError, ConfigError
from mec_jax.train import distributed, sparse, steps
from mec_jax.train import metrics as metrics_lib
from mec_jax.train import optimizer as optim
from mec_jax.train.checkpoint import Checkpointer
from mec_jax.train.evaluation import check_split, evaluate_split
from mec_jax.train.result import FitResult, load_result, result_path, write_json_atomic
from mec_jax.train.row_optimizers import DEFAULT_SPARSE_OPTIMIZER, SPARSE_OPTIMIZERS

__all__ = [
  "FitResult",
  "NonFiniteLossError",
  "TrainConfig",
  "evaluate_splits",
  "fit",
  "load_result",
  "result_path",
]


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Training settings; field names and defaults mirror ``config.train`` (configs/default.py)."""

  batch_size: int = 4096
  eval_batch_size: int = 16384
  epochs: int = 10
  learning_rate: float = 1e-3
  grad_clip_norm: float = 10.0
  weight_decay: float = 0.0
  patience: int = 2
  lr_decay: float = 0.1
  monitor: str = "auc_minus_logloss"
  seed: int = 2024
  checkpoint_every_steps: int = 500
  log_every_steps: int = 50
  progress: bool = True
  embedding_regularizer: float = 0.0  # from config.model.embedding_regularizer
  sparse_min_rows: int = 20_000  # Embed tables this large train row-sparse (0: none)
  sparse_optimizer: str = DEFAULT_SPARSE_OPTIMIZER  # row_optimizers.SPARSE_OPTIMIZERS
  sparse_learning_rate: float = 0.0  # rate of the sparse tables; 0: their dense rate
  model_axis_size: int = 1  # k > 1: ('data', 'model') mesh (N/k, k), sparse rows split on 'model'

  def __post_init__(self):
    for key in ("batch_size", "eval_batch_size", "epochs", "log_every_steps"):
      if getattr(self, key) < 1:
        raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
    if self.patience < 1:
      raise ValueError(f"train.patience must be >= 1, got {self.patience}")
    if not 0 < self.lr_decay <= 1:
      raise ValueError(f"train.lr_decay must be in (0, 1], got {self.lr_decay}")
    if self.monitor not in metrics_lib.MONITORS:
      raise ValueError(f"train.monitor={self.monitor!r}; expected one of {metrics_lib.MONITORS}")
    if self.sparse_optimizer not in SPARSE_OPTIMIZERS:
      raise ConfigError(
        f"train.sparse_optimizer={self.sparse_optimizer!r}; expected one of {SPARSE_OPTIMIZERS}"
      )
    if self.sparse_min_rows < 0 or not self.sparse_learning_rate >= 0:
      raise ConfigError(
        f"train.sparse_min_rows={self.sparse_min_rows}, train.sparse_learning_rate="
        f"{self.sparse_learning_rate}; both must be >= 0"
      )
    if self.model_axis_size < 1:
      raise ConfigError(f"train.model_axis_size={self.model_axis_size}; expected >= 1")

  @classmethod
  def from_config(cls, config, **overrides) -> TrainConfig:
    """From the root config (``train`` + ``model.embedding_regularizer``) or ``config.train``.

    Keys of ``config.train`` that are not fields here are ignored; ``overrides`` win.
    """
    train = config.train if "train" in config else config
    kwargs = {f.name: train[f.name] for f in dataclasses.fields(cls) if f.name in train}
    if "model" in config and "embedding_regularizer" in config.model:
      kwargs["embedding_regularizer"] = float(config.model.embedding_regularizer)
    return cls(**(kwargs | overrides))


class _MetricsLog:
  """Appends JSON lines to ``metrics.jsonl`` (flushed per line, so a kill loses nothing).

  Only the writer process (process 0) writes; the others' events are the same.
  """

  def __init__(self, path: str):
    self.path = path

  def write(self, event: str, **fields) -> None:
    if not distributed.is_writer():
      return
    with open(self.path, "a") as fh:
      fh.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")


def _run_dir(workdir: str, name: str) -> str:
  if not name or os.sep in name:
    raise ValueError(f"fit: name must be a plain directory name, got {name!r}")
  return os.path.join(os.path.abspath(workdir), name)


def _fresh_loop_state(lr_scale: float, row_shards: int) -> dict:
  return {
    "row_shards": row_shards,  # the sparse arrays' row padding multiple (sparse.row_shards)
    "epoch": 0,  # epochs completed
    "next_batch": 0,  # position of the train iterator inside the current epoch
    "step": 0,
    "best_score": None,
    "best_step": None,
    "best_epoch": None,
    "patience_counter": 0,
    "lr_scale": lr_scale,
    "stopped": False,  # early stopping triggered
    "epoch_loss_sum": 0.0,
    "epoch_loss_count": 0,
    "history": [],
  }


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
  cfg = train_config
  run_dir = _run_dir(workdir, name)
  os.makedirs(run_dir, exist_ok=True)
  for split in ("train", "valid"):
    if split not in splits:
      raise ValueError(f"fit: splits has no {split!r} split (got {sorted(splits)})")
  for split, arrays in splits.items():
    check_split(arrays, model, split)
  mesh = mesh or steps.train_mesh(cfg.model_axis_size)
  if cfg.batch_size % mesh.size:
    raise ValueError(
      f"train.batch_size={cfg.batch_size} must be a multiple of the {mesh.size} devices"
    )

  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  optim.log_lr_overrides(params, lr_overrides)
  fields = sparse.find_sparse_fields(
    model,
    min_rows=cfg.sparse_min_rows,
    rate_of_path=lambda path: optim.learning_rate_of(path, cfg.learning_rate, lr_overrides),
    sparse_learning_rate=cfg.sparse_learning_rate,
  )
  if fields:
    logging.info(
      "%s: row-sparse tables (%s): %s",
      name,
      cfg.sparse_optimizer,
      ", ".join(f"field {f.field} ({f.vocab_size:,} rows, lr {f.learning_rate:g})" for f in fields),
    )
  tx = optim.make_optimizer(
    cfg.learning_rate, weight_decay=cfg.weight_decay, lr_overrides=lr_overrides
  )
  state, shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer=cfg.sparse_optimizer
  )
  del params  # the sparse tables now live in state.sparse only
  checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"))
  try:
    if os.path.exists(result_path(workdir, name)):
      result = load_result(workdir, name)
      _check_kept(checkpointer, result.best_step, run_dir, "the finished run's best epoch")
      try:
        state, _ = _restore(checkpointer, result.best_step, state, fields, mesh)
      except ArtifactError as err:
        # Damaged files, or Orbax's tree mismatch when the model or optimizer changed since.
        raise ArtifactError(
          f"{run_dir}: the finished run's checkpoint (step {result.best_step}) cannot be "
          f"restored: damaged files, or another model/optimizer ({err}); delete {run_dir} to "
          "retrain"
        ) from err
      _load_into_model(model, state, fields)
      model.eval()
      logging.info(
        "%s: finished run found in %s; restored step %d", name, run_dir, result.best_step
      )
      return result
    return _train(
      model,
      splits,
      cfg,
      run_dir,
      name,
      (graphdef, rng_state, tx, fields, shardings),
      state,
      checkpointer,
      mesh,
      on_step,
    )
  finally:
    checkpointer.close()


def _restore(checkpointer, step: int, state: steps.TrainState, fields, mesh):
  """``checkpointer.restore`` into ``state``, also from a run on another device count or mesh.

  Sparse arrays are padded to a multiple of their row shard count (`sparse.padded_rows`,
  `sparse.row_shards`); a checkpoint padded for another count is restored onto this mesh with
  its padding rows (never read) cut or zero-filled, once its shapes show that nothing else
  differs.
  """
  shards = sparse.row_shards(mesh)
  saved_shards = shards
  if fields:
    saved_shards = checkpointer.loop_state(step).get("row_shards", shards)
  if saved_shards == shards:
    return checkpointer.restore(step, state)
  saved = checkpointer.saved_arrays(step)
  problem = sparse.padding_mismatch(saved.get("sparse", {}), state.sparse, fields, saved_shards)
  dense_saved = {k: v for k, v in saved.items() if k != "sparse"}
  if problem is None and _shapes(dense_saved) != _shapes(state.replace(sparse={})):
    problem = "the dense parameters or optimizer state differ"
  if problem:
    raise ArtifactError(
      f"{checkpointer.directory}: step {step} was saved with sparse rows split {saved_shards} "
      f"ways and cannot be restored split {shards} ways ({mesh.size} devices): {problem}"
    )
  logging.info("restoring step %d saved %d row shards onto %d", step, saved_shards, shards)
  return checkpointer.restore(step, state, strict=False)


def _check_kept(checkpointer, step: int, run_dir: str, what: str) -> None:
  """Raises `ArtifactError` if checkpoint ``step`` (the one a run will restore) is gone.

  `Checkpointer` keeps it; only a run directory written by an older mec_jax (which could
  delete the best step on a rerun after a kill) or edited by hand lacks it.
  """
  if step not in checkpointer.all_steps():
    raise ArtifactError(
      f"{checkpointer.directory}: the checkpoint of {what} (step {step}) is missing "
      f"(available {checkpointer.all_steps()}), so this run cannot end on its best state; "
      f"delete {run_dir} to train it again"
    )


def _shapes(tree) -> list:
  return sorted(np.shape(x) for x in jax.tree.leaves(tree))


def _eval_params(state: steps.TrainState, fields):
  """The full parameter state (sparse tables in place, still sharded) for the eval step."""
  if not fields:
    return state.params
  return sparse.merge_tables(state.params, sparse.tables_of(state.sparse), fields)


def _load_into_model(model, state: steps.TrainState, fields) -> None:
  params = state.params
  if fields:
    tables = sparse.model_tables(sparse.tables_of(state.sparse), fields)
    params = sparse.merge_tables(params, tables, fields)
  nnx.update(model, params, state.other)


def _train(
  model, splits, cfg, run_dir, name, compiled, state, checkpointer, mesh, on_step
) -> FitResult:
  graphdef, rng_state, tx, fields, shardings = compiled
  log = _MetricsLog(os.path.join(run_dir, "metrics.jsonl"))
  loop_state = _fresh_loop_state(optim.lr_scale(state.opt_state), sparse.row_shards(mesh))
  latest = checkpointer.latest_step()
  if latest is not None:
    state, loop_state = _restore(checkpointer, latest, state, fields, mesh)
    loop_state["row_shards"] = sparse.row_shards(mesh)  # the arrays are now padded for this mesh
    if loop_state["best_step"] is not None:
      _check_kept(checkpointer, loop_state["best_step"], run_dir, f"step {latest}'s best epoch")
    logging.info(
      "%s: resuming from step %d (epoch %d, batch %d)",
      name,
      latest,
      loop_state["epoch"],
      loop_state["next_batch"],
    )
    log.write("resume", step=latest, epoch=loop_state["epoch"], next_batch=loop_state["next_batch"])

  loader = BatchLoader(
    splits["train"], cfg.batch_size, shuffle=True, seed=cfg.seed, drop_remainder=True
  )
  train_step = steps.make_train_step(
    graphdef,
    rng_state,
    tx,
    mesh,
    dropout_key=jax.random.fold_in(jax.random.key(cfg.seed), 1),
    embedding_regularizer=cfg.embedding_regularizer,
    sparse_fields=fields,
    sparse_optimizer=cfg.sparse_optimizer,
    grad_clip_norm=cfg.grad_clip_norm,
    weight_decay=cfg.weight_decay,
    state_sharding=shardings,
  )
  model.eval()
  eval_graphdef = nnx.graphdef(model)
  model.train()
  eval_step = steps.make_eval_step(eval_graphdef, rng_state, mesh, sparse_fields=fields)

  pending: list = []  # device losses not yet checked on the host

  def drain(step: int) -> float | None:
    """Checks pending losses for NaN/inf; adds them to the epoch sums; returns their mean."""
    if not pending:
      return None
    values = np.asarray(jax.device_get(pending), np.float64)
    first = step - len(values) + 1
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
      at = first + int(bad[0])
      good = checkpointer.latest_step()
      kept = "No checkpoint had been written yet"
      if good is not None:
        kept = f"The last good checkpoint (step {good}) is kept in {checkpointer.directory}"
      raise NonFiniteLossError(
        f"{name}: training loss is {values[bad[0]]} at step {at} (epoch "
        f"{(at - 1) // loader.num_batches + 1}); the run diverged. Lower train.learning_rate "
        f"(now {cfg.learning_rate:g} x lr scale {loop_state['lr_scale']:g}) or "
        f"train.grad_clip_norm. {kept}; delete {run_dir} to train again with new settings."
      )
    pending.clear()
    loop_state["epoch_loss_sum"] += float(values.sum())
    loop_state["epoch_loss_count"] += len(values)
    return float(values.mean())

  while loop_state["epoch"] < cfg.epochs and not loop_state["stopped"]:
    epoch = loop_state["epoch"]
    iterator = loader.iterator({"epoch": epoch, "next_batch": loop_state["next_batch"]})
    bar = tqdm(
      total=loader.num_batches,
      initial=loop_state["next_batch"],
      desc=f"{name} epoch {epoch + 1}/{cfg.epochs}",
      disable=not (cfg.progress and distributed.is_writer()),
      leave=False,
    )
    epoch_start = tick = time.time()
    tick_step = loop_state["step"]
    for batch in iterator:
      state, loss = train_step(state, meshes.shard_batch(batch, mesh))
      loop_state["step"] += 1
      step = loop_state["step"]
      pending.append(loss)
      bar.update(1)
      if step % cfg.log_every_steps == 0:
        mean_loss = drain(step)
        now = time.time()
        rate = (step - tick_step) * cfg.batch_size / max(now - tick, 1e-9)
        tick, tick_step = now, step
        bar.set_postfix(loss=f"{mean_loss:.4f}", samples_per_s=f"{rate:,.0f}")
        log.write(
          "train",
          epoch=epoch + 1,
          step=step,
          loss=mean_loss,
          samples_per_s=rate,
          lr=cfg.learning_rate * loop_state["lr_scale"],
        )
      if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and len(iterator):
        drain(step)
        loop_state["next_batch"] = iterator.get_state()["next_batch"]
        checkpointer.save(step, state, loop_state)
      if on_step is not None:
        on_step(step)
    bar.close()
    drain(loop_state["step"])

    valid = evaluate_split(
      eval_step,
      _eval_params(state, fields),
      state.other,
      splits["valid"],
      cfg.eval_batch_size,
      mesh,
      "valid",
    )
    score = metrics_lib.monitor_score(valid, cfg.monitor)
    lr = cfg.learning_rate * loop_state["lr_scale"]  # the rate this epoch trained with
    improved = loop_state["best_score"] is None or score > loop_state["best_score"]
    if improved:
      loop_state.update(
        best_score=score, best_step=loop_state["step"], best_epoch=epoch + 1, patience_counter=0
      )
    else:
      loop_state["patience_counter"] += 1
      loop_state["lr_scale"] *= cfg.lr_decay
      state = state.replace(opt_state=optim.set_lr_scale(state.opt_state, loop_state["lr_scale"]))
      loop_state["stopped"] = loop_state["patience_counter"] >= cfg.patience
    count = max(loop_state["epoch_loss_count"], 1)
    record = {
      "epoch": epoch + 1,
      "step": loop_state["step"],
      "train_loss": loop_state["epoch_loss_sum"] / count,
      "valid_auc": valid["auc"],
      "valid_logloss": valid["logloss"],
      "score": score,
      "improved": improved,
      "lr": lr,
      "seconds": time.time() - epoch_start,
    }
    loop_state["history"].append(record)
    log.write("valid", **record)
    logging.info(
      "%s epoch %d: valid AUC %.5f logloss %.5f%s",
      name,
      epoch + 1,
      valid["auc"],
      valid["logloss"],
      "" if improved else " (no improvement)",
    )
    loop_state.update(epoch=epoch + 1, next_batch=0, epoch_loss_sum=0.0, epoch_loss_count=0)
    checkpointer.save(loop_state["step"], state, loop_state)

  best_state, _ = _restore(checkpointer, loop_state["best_step"], state, fields, mesh)
  del state  # its tables are released before the model takes the best state's
  _load_into_model(model, best_state, fields)
  best = next(h for h in loop_state["history"] if h["epoch"] == loop_state["best_epoch"])
  test = {}
  if "test" in splits:
    test = evaluate_split(
      eval_step,
      _eval_params(best_state, fields),
      best_state.other,
      splits["test"],
      cfg.eval_batch_size,
      mesh,
      "test",
    )
    log.write("test", step=loop_state["best_step"], auc=test["auc"], logloss=test["logloss"])
  model.eval()
  result = FitResult(
    valid={"auc": best["valid_auc"], "logloss": best["valid_logloss"]},
    test=test,
    history=loop_state["history"],
    best_epoch=loop_state["best_epoch"],
    best_step=loop_state["best_step"],
    steps=loop_state["step"],
  )
  if distributed.is_writer():
    write_json_atomic(os.path.join(run_dir, "result.json"), result.to_dict())
  distributed.barrier(f"{name} result written")  # a rerun of any process then finds it
  return result


def evaluate_splits(
  model: nnx.Module,
  splits: Mapping[str, Mapping[str, np.ndarray]],
  names: Sequence[str] = ("valid", "test"),
  train_config=None,
  *,
  mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
  """Evaluates ``model`` (eval mode) on the named splits without training.

  Args:
    model: any backbone.
    splits: split arrays.
    names: splits to evaluate.
    train_config: a `TrainConfig` or ``config.train`` (only ``eval_batch_size`` is read).
    mesh: device mesh (default: all devices).

  Returns:
    ``{"<split>_auc", "<split>_logloss"}`` for every name.
  """
  batch_size = int(getattr(train_config, "eval_batch_size", TrainConfig.eval_batch_size))
  mesh = mesh or meshes.data_mesh()
  model.eval()
  graphdef, params, rng_state, other = steps.split_model(model)
  eval_step = steps.make_eval_step(graphdef, rng_state, mesh)
  state = jax.device_put({"params": params, "other": other}, meshes.replicated(mesh))
  out = {}
  for split in names:
    if split not in splits:
      raise ValueError(f"evaluate_splits: no {split!r} split (got {sorted(splits)})")
    check_split(splits[split], model, split)
    values = evaluate_split(
      eval_step, state["params"], state["other"], splits[split], batch_size, mesh, split
    )
    out |= {f"{split}_{k}": v for k, v in values.items()}
  return out
