"""Divergence guard: train losses checked for NaN/inf on the host in batches."""

from __future__ import annotations

import jax
import numpy as np

from mec_jax.train.loop_state import LoopState


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


class LossCheck:
  """Device losses not yet checked on the host: checked for NaN/inf in batches (no sync per step)."""

  def __init__(self, run, loop: LoopState, batches_per_epoch: int):
    self.run, self.loop, self.batches_per_epoch = run, loop, batches_per_epoch
    self.pending: list = []

  def drain(self, step: int) -> float | None:
    """Checks pending losses; adds them to the epoch sums; returns their mean (None: none)."""
    if not self.pending:
      return None
    values = np.asarray(jax.device_get(self.pending), np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
      self._diverged(step - len(values) + 1 + int(bad[0]), values[bad[0]])
    self.pending.clear()
    self.loop.add_losses(float(values.sum()), len(values))
    return float(values.mean())

  def _diverged(self, at: int, value: float):
    run = self.run
    good = run.checkpointer.latest_step()
    kept = "No checkpoint had been written yet"
    if good is not None:
      kept = f"The last good checkpoint (step {good}) is kept in {run.checkpointer.directory}"
    raise NonFiniteLossError(
      f"{run.name}: training loss is {value} at step {at} (epoch "
      f"{(at - 1) // self.batches_per_epoch + 1}); the run diverged. Lower train.learning_rate "
      f"(now {run.cfg.learning_rate:g} x lr scale {self.loop.lr_scale:g}) or "
      f"train.grad_clip_norm. {kept}; delete {run.run_dir} to train again with new settings."
    )
