"""`LoopState`: where the training loop stands, saved as JSON beside every checkpoint.

The on-disk form (`to_dict`) keeps the keys of the earlier dict, so checkpoints written before
this type existed resume (`from_dict` ignores keys it does not know and fills missing ones).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class LoopState:
  """The loop's host-side state (the arrays are in ``TrainState``).

  Attributes:
    row_shards: the sparse arrays' row padding multiple (`sparse.row_shards`).
    epoch: epochs completed.
    next_batch: position of the train iterator inside the current epoch.
    step: train steps taken.
    best_score: best validation monitor score so far (None before the first epoch).
    best_step: step of that score's checkpoint (kept by `Checkpointer`).
    best_epoch: epoch (1-based) of that score.
    patience_counter: epochs since the last improvement.
    lr_scale: learning-rate multiplier after plateau decays.
    stopped: early stopping triggered.
    epoch_loss_sum: sum of this epoch's checked train losses.
    epoch_loss_count: how many losses that sum holds.
    history: one record per finished epoch (`end_epoch`).
  """

  row_shards: int = 1
  epoch: int = 0
  next_batch: int = 0
  step: int = 0
  best_score: float | None = None
  best_step: int | None = None
  best_epoch: int | None = None
  patience_counter: int = 0
  lr_scale: float = 1.0
  stopped: bool = False
  epoch_loss_sum: float = 0.0
  epoch_loss_count: int = 0
  history: list = dataclasses.field(default_factory=list)

  def to_dict(self) -> dict:
    """The JSON-able form saved with a checkpoint (the keys of earlier versions)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, saved: dict) -> LoopState:
    """From `to_dict`'s form (unknown keys ignored, missing ones at their defaults)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in saved.items() if k in names})

  def add_losses(self, total: float, count: int) -> None:
    self.epoch_loss_sum += total
    self.epoch_loss_count += count

  def mean_epoch_loss(self) -> float:
    return self.epoch_loss_sum / max(self.epoch_loss_count, 1)

  def judge(self, score: float, *, patience: int, lr_decay: float) -> bool:
    """Records an epoch's validation score: best so far, or a plateau (lr decay, early stop).

    Returns:
      Whether ``score`` improved on the best (the first score always does).
    """
    improved = self.best_score is None or score > self.best_score
    if improved:
      self.best_score, self.best_step = score, self.step
      self.best_epoch, self.patience_counter = self.epoch + 1, 0
    else:
      self.patience_counter += 1
      self.lr_scale *= lr_decay
      self.stopped = self.patience_counter >= patience
    return improved

  def end_epoch(self, record: dict) -> None:
    """Appends the epoch's record and moves to the next epoch's start."""
    self.history.append(record)
    self.epoch += 1
    self.next_batch, self.epoch_loss_sum, self.epoch_loss_count = 0, 0.0, 0

  def best_record(self) -> dict:
    return next(h for h in self.history if h["epoch"] == self.best_epoch)
