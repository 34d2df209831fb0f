"""`LoopState`: the on-disk keys of earlier checkpoints, and the plateau/early-stop rules."""

import pytest

from mec_jax.train.loop_state import LoopState

# The dict the loop saved before LoopState existed (checkpoints on disk carry these keys).
OLD_KEYS = {
  "row_shards",
  "epoch",
  "next_batch",
  "step",
  "best_score",
  "best_step",
  "best_epoch",
  "patience_counter",
  "lr_scale",
  "stopped",
  "epoch_loss_sum",
  "epoch_loss_count",
  "history",
}


def test_to_dict_keeps_the_old_keys_and_round_trips():
  state = LoopState(
    row_shards=2, epoch=3, step=40, best_score=0.5, best_step=30, history=[{"a": 1}]
  )
  saved = state.to_dict()
  assert set(saved) == OLD_KEYS
  assert LoopState.from_dict(saved) == state
  old = dict(saved, unknown_later_key=1)
  del old["row_shards"]  # a checkpoint without it resumes with the default
  assert LoopState.from_dict(old).row_shards == 1


def test_judge_decays_on_a_plateau_and_stops_after_patience():
  state = LoopState(lr_scale=1.0)
  scores, patience, decay = [0.5, 0.6, 0.55, 0.58, 0.7], 2, 0.1
  improved = []
  for step, score in enumerate(scores, start=1):
    state.step = 10 * step
    improved.append(state.judge(score, patience=patience, lr_decay=decay))
    state.end_epoch({"epoch": state.epoch + 1})
    if state.stopped:
      break
  assert improved == [True, True, False, False]  # stops before the 5th score
  assert state.best_score == 0.6 and state.best_step == 20 and state.best_epoch == 2
  assert state.lr_scale == pytest.approx(decay**2)
  assert state.best_record() == {"epoch": 2} and state.epoch == 4 and state.next_batch == 0


def test_mean_epoch_loss():
  state = LoopState()
  assert state.mean_epoch_loss() == 0.0
  state.add_losses(3.0, 2)
  state.add_losses(1.0, 2)
  assert state.mean_epoch_loss() == pytest.approx(1.0)
