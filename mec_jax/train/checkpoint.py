"""Orbax checkpoints of a training run: train state + JSON loop state, last 2 steps + best epoch.

One ``CheckpointManager`` per run directory. Each checkpoint has two items:

* ``state``: the `TrainState` (params, non-parameter model state, optimizer state, step),
  restored into an abstract target so shapes, dtypes and shardings come from the live model;
* ``loop``: JSON-able loop state (epoch, data-iterator position, best score, lr scale,
  patience counter, history, ...).

Retention: the latest ``keep_last`` checkpoints, plus the checkpoint saved with a ``score``
(only epoch ends that improved the validation score pass one) that has the highest score.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


def abstract_like(tree: Any) -> Any:
  """Shape/dtype/sharding skeleton of ``tree`` (the restore target)."""
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
  )


class Checkpointer:
  """Saves and restores ``(state, loop_state)`` under ``directory/<step>/``.

  Args:
    directory: checkpoint directory (created if missing).
    keep_last: number of most recent checkpoints to keep (besides the best one).
    async_save: write in a background thread (device-to-host copies still happen in `save`).
  """

  def __init__(self, directory: str, *, keep_last: int = 2, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    preservation = policies.AnyPreservationPolicy(
      [
        policies.LatestN(keep_last),
        policies.BestN(
          get_metric_fn=lambda metrics: metrics["score"],
          reverse=False,
          n=1,
          keep_checkpoints_without_metrics=False,
        ),
      ]
    )
    options = ocp.CheckpointManagerOptions(
      preservation_policy=preservation,
      enable_async_checkpointing=async_save,
      create=True,
    )
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=("state", "loop")
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, loop_state: dict, *, score: float | None = None) -> None:
    """Saves a checkpoint at ``step`` (replacing one already there).

    Args:
      step: global train step.
      state: pytree of arrays (the `TrainState`).
      loop_state: JSON-able dict.
      score: validation score, only for checkpoints that may be kept as the best one.
    """
    # The loop keeps mutating its state dict while the async save runs: save a snapshot.
    self._manager.wait_until_finished()
    if step in self._manager.all_steps():
      self._manager.delete(step)
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(copy.deepcopy(loop_state))
      ),
      metrics=None if score is None else {"score": float(score)},
      force=True,
    )

  def restore(self, step: int, target: Any) -> tuple[Any, dict]:
    """Restores ``(state, loop_state)`` of ``step`` into the structure of ``target``.

    Args:
      step: a step in `all_steps`.
      target: a live or abstract state; only its structure, shapes, dtypes and shardings are used.

    Raises:
      ValueError: if no checkpoint exists at ``step``.
    """
    self._manager.wait_until_finished()
    if step not in self._manager.all_steps():
      raise ValueError(
        f"{self.directory}: no checkpoint at step {step}; available {self.all_steps()}"
      )
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_like(target)), loop=ocp.args.JsonRestore()
      ),
    )
    return restored.state, dict(restored.loop)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
