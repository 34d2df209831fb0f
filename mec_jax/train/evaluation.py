"""Whole-split prediction and metrics with a jitted eval step (padded, masked, multi-host safe)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from mec_jax import mesh as meshes
from mec_jax.data.loader import BatchLoader
from mec_jax.layers.base import check_ids
from mec_jax.train import metrics as metrics_lib
from mec_jax.train import steps
from mec_jax.train.config import TrainConfig


def check_split(split: Mapping[str, np.ndarray], model, name: str) -> None:
  """Validates a split's arrays against the model's field embedding (fields, id ranges).

  Raises:
    ValueError: naming the split, the array and the offending value (`DataError` for ids that
      break the id policy of `mec_jax.layers.base`).
  """
  for key in ("ids", "values", "label"):
    if key not in split:
      raise ValueError(f"{name}: missing array {key!r}; expected ids, values, label")
  ids, values, label = split["ids"], split["values"], split["label"]
  rows = len(label)
  if ids.ndim != 2 or ids.shape[0] != rows or values.shape != ids.shape:
    raise ValueError(
      f"{name}: ids {ids.shape}, values {values.shape}, label {label.shape} do not agree "
      "(expected [rows, fields], [rows, fields], [rows])"
    )
  embedding = getattr(model, "embedding", None)
  num_fields = getattr(embedding, "num_fields", ids.shape[1])
  if ids.shape[1] != num_fields:
    raise ValueError(f"{name}: ids has {ids.shape[1]} fields, the model's embedding {num_fields}")
  vocab_sizes = getattr(embedding, "vocab_sizes", None)
  if vocab_sizes is not None:
    check_ids(ids, vocab_sizes, name)  # the id policy of mec_jax.layers.base
  elif not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"{name}: ids must be integers, got {ids.dtype}")


def eval_batch_size(requested: int, num_rows: int, mesh) -> int:
  """Eval batch: at most ``requested``, no larger than the split, a multiple of the devices."""
  multiple = mesh.size  # every device of every process gets the same number of rows
  size = min(requested, max(num_rows, 1))
  return -(-size // multiple) * multiple


def _to_host(x: jax.Array) -> np.ndarray:
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def predict(
  eval_step, params, other, split: Mapping[str, np.ndarray], batch_size: int, mesh
) -> tuple[np.ndarray, np.ndarray]:
  """Probabilities and labels of every row of ``split`` (all processes' rows, any order).

  Args:
    eval_step: from `steps.make_eval_step`.
    params, other: model states (replicated on ``mesh``).
    split: split arrays.
    batch_size: requested global eval batch (see `eval_batch_size`).
    mesh: device mesh.

  Returns:
    ``(probs, labels)`` float arrays ``[num_rows]``.
  """
  size = eval_batch_size(batch_size, len(split["label"]), mesh)
  loader = BatchLoader(split, size, shuffle=False, pad_to_batch=True, prefetch=2)
  outputs = [eval_step(params, other, meshes.shard_batch(b, mesh)) for b in loader.iterator()]
  probs, labels, masks = (np.concatenate([_to_host(out[i]) for out in outputs]) for i in range(3))
  keep = masks > 0
  return probs[keep], labels[keep]


def evaluate_split(
  eval_step, params, other, split: Mapping[str, np.ndarray], batch_size: int, mesh, name: str
) -> dict[str, float]:
  """``{"auc", "logloss"}`` of the model on ``split``."""
  probs, labels = predict(eval_step, params, other, split, batch_size, mesh)
  return metrics_lib.evaluate(labels, probs, name)


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
