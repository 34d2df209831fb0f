"""Orbax checkpoints of a training run: train state + JSON loop state, last 2 steps + best epoch.

One ``CheckpointManager`` per run directory. Each checkpoint has two items:

* ``state``: the `TrainState` (params, non-parameter model state, optimizer state, step),
  restored into an abstract target so shapes, dtypes and shardings come from the live model;
* ``loop``: JSON-able loop state (epoch, data-iterator position, best score, lr scale,
  patience counter, history, ...).

Retention: the latest ``keep_last`` checkpoints, plus every step that one of them names in its
loop state under ``preserve_key`` (``"best_step"``: the step a run resumed from that checkpoint
will restore at its end). The name is read from the checkpoint itself, so it is recorded
atomically with it and survives a restart: a reopened manager keeps the same steps as the one
that wrote them. (Orbax's ``BestN`` keeps its scores in memory only when a preservation policy
is given, so a rerun after a kill or a failed save deleted the best step.) The previous latest
checkpoint stays among the kept ones until the next save is complete, so the step it names is
never deleted before a newer checkpoint names its own.

Failures: Orbax writes in background threads and reports a failed write (disk full, read-only
mount) as a chain of asyncio/TensorStore errors at the next wait; every save, restore and close
here raises one `ArtifactError` naming the directory, the step and the root cause instead.
A save that failed leaves the earlier checkpoints as they were (Orbax writes into a temporary
directory and renames it only when complete).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import os
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp

from mec_jax.errors import ArtifactError, one_line, root_cause


def abstract_like(tree: Any) -> Any:
  """Shape/dtype/sharding skeleton of ``tree`` (the restore target)."""
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
  )


@dataclasses.dataclass
class _LatestAndWhatTheyName:
  """Orbax preservation policy: the latest ``keep_last`` steps and the steps they name.

  ``named(step)`` is the step that checkpoint ``step`` names (or None).
  """

  keep_last: int
  named: Callable[[int], int | None]

  def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> list[bool]:
    del context
    latest = sorted(info.step for info in checkpoints)[-self.keep_last :]
    keep = set(latest) | {self.named(step) for step in latest}
    return [info.step in keep for info in checkpoints]


class Checkpointer:
  """Saves and restores ``(state, loop_state)`` under ``directory/<step>/``.

  Args:
    directory: checkpoint directory (created if missing).
    keep_last: number of most recent checkpoints to keep (>= 2; besides the steps they name).
    async_save: write in a background thread (device-to-host copies still happen in `save`).
    preserve_key: loop-state key whose value (a step, or None) names a checkpoint to keep for
      as long as the checkpoint naming it is among the latest ``keep_last``.
  """

  def __init__(
    self,
    directory: str,
    *,
    keep_last: int = 2,
    async_save: bool = True,
    preserve_key: str = "best_step",
  ):
    if keep_last < 2:
      raise ValueError(f"Checkpointer: keep_last must be >= 2, got {keep_last}")
    self.directory = os.path.abspath(directory)
    self._preserve_key = preserve_key
    self._named: dict[int, int | None] = {}  # step -> the step its loop state names
    options = ocp.CheckpointManagerOptions(
      preservation_policy=_LatestAndWhatTheyName(keep_last, self._named_by),
      enable_async_checkpointing=async_save,
      create=True,
    )
    self._failed = False
    self._pending_step = None  # step of the async save that may still be running
    with self._errors("open"):
      # Handlers named up front, so a fresh manager can read a saved step's metadata too.
      self._manager = ocp.CheckpointManager(
        self.directory,
        options=options,
        item_handlers={
          "state": ocp.StandardCheckpointHandler(),
          "loop": ocp.JsonCheckpointHandler(),
        },
      )
    for step in self.all_steps():  # written by an earlier process: read what each one names
      self._named[step] = self._read_named(step)

  def _read_named(self, step: int) -> int | None:
    try:
      return self.loop_state(step).get(self._preserve_key)
    except ArtifactError:  # unreadable: the restore of that step will say so
      self._failed = False
      return None

  def _named_by(self, step: int) -> int | None:
    return self._named.get(step)

  def named_step(self, step: int) -> int | None:
    """The step that checkpoint ``step`` names under ``preserve_key`` (kept while it is)."""
    return self._named_by(step)

  @contextlib.contextmanager
  def _errors(self, action: str, step: int | None = None):
    """Turns any exception of the Orbax calls inside into one `ArtifactError`."""
    try:
      yield
    except ArtifactError:
      raise
    except Exception as err:
      self._failed = True
      at = "" if step is None else f" step {step}"
      hint = (
        f"delete {self.directory} to retrain"
        if action == "restore"
        else "free disk space or use another --workdir"
      )
      raise ArtifactError(
        f"{self.directory}: cannot {action} checkpoint{at}: {_reason(root_cause(err))}; {hint}"
      ) from err

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, loop_state: dict) -> None:
    """Saves a checkpoint at ``step`` (replacing one already there).

    Args:
      step: global train step.
      state: pytree of arrays (the `TrainState`).
      loop_state: JSON-able dict; ``loop_state[preserve_key]`` (if any) names a step to keep.
    """
    self.wait()  # a failure of the previous (async) save surfaces here
    self._pending_step = step
    with self._errors("save", step):
      if step in self._manager.all_steps():
        self._manager.delete(step)
      self._named[step] = loop_state.get(self._preserve_key)
      # The loop keeps mutating its state dict while the async save runs: save a snapshot.
      self._manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(copy.deepcopy(loop_state))
        ),
        force=True,
      )

  def saved_arrays(self, step: int) -> Any:
    """What was saved at ``step``: the state's tree (as nested dicts/lists) of
    ``jax.ShapeDtypeStruct``s, read from the metadata (no arrays are read)."""
    self._check_step(step)
    with self._errors("restore", step):
      metadata = self._manager.item_metadata(step)["state"]
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), metadata.tree)

  def loop_state(self, step: int) -> dict:
    """The loop state saved at ``step`` alone (no arrays are read)."""
    self._check_step(step)
    with self._errors("restore", step):
      restored = self._manager.restore(step, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))
    return dict(restored.loop)

  def _check_step(self, step: int) -> None:
    self.wait()
    if step not in self._manager.all_steps():
      raise ArtifactError(
        f"{self.directory}: no checkpoint at step {step}; available {self.all_steps()}"
      )

  def restore(self, step: int, target: Any, *, strict: bool = True) -> tuple[Any, dict]:
    """Restores ``(state, loop_state)`` of ``step`` into the structure of ``target``.

    Args:
      step: a step in `all_steps`.
      target: a live or abstract state; only its structure, shapes, dtypes and shardings are used.
      strict: False lets Orbax cut or zero-pad arrays whose saved shape differs from the
        target's (the caller has checked that only padding rows differ).

    Raises:
      ArtifactError: if no checkpoint exists at ``step``, or it cannot be read into ``target``
        (damaged files, or saved from another model/optimizer).
    """
    self._check_step(step)
    skeleton, rebuild = abstract_like(target), None
    missing = self._empty_fields_not_on_disk(step, target)
    if missing:  # written before these (here empty) fields of the state existed
      skeleton = {k: v for k, v in vars(skeleton).items() if k not in missing}
      rebuild = functools.partial(dataclasses.replace, target)
    with self._errors("restore", step):
      restored = self._manager.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(skeleton, strict=strict),
          loop=ocp.args.JsonRestore(),
        ),
      )
    state = restored.state if rebuild is None else rebuild(**restored.state)
    return state, dict(restored.loop)

  def _empty_fields_not_on_disk(self, step: int, target: Any) -> set[str]:
    """Fields of a dataclass ``target`` that are empty there and absent from checkpoint ``step``.

    A checkpoint from an older mec_jax lacks fields the train state gained since (``sparse``,
    empty for a model without row-sparse tables); such a checkpoint still restores.
    """
    if not dataclasses.is_dataclass(target):
      return set()
    empty = {
      f.name
      for f in dataclasses.fields(target)
      if isinstance(getattr(target, f.name), (dict, list, tuple)) and not getattr(target, f.name)
    }
    if not empty:
      return set()
    state_dir = os.path.join(self.directory, str(step), "state")  # the manager's default layout
    try:
      on_disk = set(ocp.StandardCheckpointHandler().metadata(pathlib.Path(state_dir)).keys())
    except Exception:  # noqa: BLE001  (unreadable metadata: let the restore itself report it)
      return set()
    return empty - on_disk if on_disk else set()

  def wait(self) -> None:
    """Blocks until the last async save is on disk (raises `ArtifactError` if it failed)."""
    with self._errors("save", self._pending_step):
      self._manager.wait_until_finished()
    self._pending_step = None

  def close(self) -> None:
    """Finishes pending writes; after a failed save, closes without raising it a second time."""
    try:
      with self._errors("close"):
        self._manager.close()
    except ArtifactError:
      if not self._failed:
        raise


def _reason(err: BaseException) -> str:
  """The root cause in words; TensorStore's long write errors shortened to their OS error."""
  text = one_line(err)
  code = re.search(r"os_error_code='?(\d+)", text)
  if code:
    return f"{os.strerror(int(code.group(1)))} [errno {code.group(1)}]"
  return text[:300]
