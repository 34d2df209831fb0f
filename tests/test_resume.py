"""Stage C always resumes: SIGKILL at many moments, or a disk full, then the same command again
gives the uninterrupted run's report; the best epoch's checkpoint is never deleted."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest

from configs import smoke
from mec_jax import pipeline
from mec_jax.errors import ArtifactError
from mec_jax.train import loop
from mec_jax.train.checkpoint import Checkpointer

REPO = Path(__file__).resolve().parents[1]
# Stage C of this config: 9 steps per epoch, 4 epochs, a checkpoint every 5 steps and at each epoch
# end. A finetune lr far above the default makes the codebooks overfit, so the best epoch comes
# before the last (epoch 2 of 4 here; the moments below are derived from the reference's history).
SETTINGS = {"train.epochs": 4, "train.patience": 3, "finetune.learning_rate": 3e-2}
STEPS_PER_EPOCH, EPOCHS, EVERY = 9, 4, 5
SAVES = sorted(set(range(EVERY, STEPS_PER_EPOCH * EPOCHS + 1, EVERY)) | {9, 18, 27, 36})


def _config():
  config = smoke.get_config()
  for key, value in SETTINGS.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


@pytest.fixture(scope="module")
def stages_ab(tmp_path_factory):
  """A workdir with stages A and B done (stage C not started)."""
  workdir = tmp_path_factory.mktemp("ab")
  for stage in ("pretrain", "quantize"):
    config = _config()
    config.stage = stage
    pipeline.run(config, str(workdir))
  assert not (workdir / "finetune").exists()
  return workdir


@pytest.fixture(scope="module")
def reference(stages_ab, tmp_path_factory):
  """``(report, stage-C FitResult)`` of the uninterrupted run."""
  workdir = tmp_path_factory.mktemp("reference") / "w"
  shutil.copytree(stages_ab, workdir)
  report = pipeline.run(_config(), str(workdir))
  result = loop.load_result(str(workdir), "finetune")
  assert result.steps == STEPS_PER_EPOCH * EPOCHS and len(result.history) == EPOCHS
  assert result.best_epoch < EPOCHS, "the moments after the best epoch need a later epoch"
  return report, result


def _same_run(report, result, reference):
  ref_report, ref_result = reference
  assert result.best_step == ref_result.best_step and result.steps == ref_result.steps
  assert result.metrics() == pytest.approx(ref_result.metrics(), abs=1e-6)
  for a, b in zip(result.history, ref_result.history, strict=True):
    assert a["valid_auc"] == pytest.approx(b["valid_auc"], abs=1e-6)
  for kind in ("full", "compressed"):
    assert report[kind] == pytest.approx(ref_report[kind], abs=1e-6)


def test_reopened_checkpointer_keeps_the_best_step(tmp_path):
  """The bug behind 'no checkpoint at step 9; available [25, 27]': Orbax forgot which step was
  best once the directory was reopened, and deleted it at the next save."""
  state = {"w": jax.numpy.arange(4.0)}
  first = Checkpointer(str(tmp_path))
  for step, best in ((5, None), (9, 9), (10, 9), (15, 9)):
    first.save(step, state, {"best_step": best})
  first.close()
  assert first.all_steps() == [9, 10, 15]
  again = Checkpointer(str(tmp_path))  # a rerun after a kill
  assert again.named_step(15) == 9
  again.save(18, state, {"best_step": 9})
  again.save(20, state, {"best_step": 9})
  again.wait()
  assert again.all_steps() == [9, 18, 20]
  again.save(27, state, {"best_step": 27})
  again.wait()  # 20 (the previous latest) still names 9: a kill now resumes from 20 or 27
  assert again.all_steps() == [9, 20, 27]
  again.save(30, state, {"best_step": 27})
  again.wait()  # 9 goes once no kept checkpoint names it
  assert again.all_steps() == [27, 30]
  again.close()


# A driver that runs `python -m mec_jax.main` and SIGKILLs itself at one moment of stage C:
# ("during", s): while the files of step s are being written (Orbax writes the loop item into the
# step's temporary directory: the state item may be half written, nothing is committed),
# ("after", s): once the save of step s is complete, ("result", 0): before result.json is written.
_DRIVER = textwrap.dedent(
  """
  import os, runpy, signal, sys
  from orbax.checkpoint._src.handlers import json_checkpoint_handler as jch
  from mec_jax.train import checkpoint, loop
  when, at = sys.argv[1], int(sys.argv[2])
  def kill():
    os.kill(os.getpid(), signal.SIGKILL)
  write_json = jch.JsonCheckpointHandler._save_fn
  async def killing_write_json(self, x, directory):
    if when == "during" and f"finetune/checkpoints/{at}." in str(directory):
      kill()
    return await write_json(self, x, directory)
  jch.JsonCheckpointHandler._save_fn = killing_write_json
  save = checkpoint.Checkpointer.save
  def killing_save(self, step, state, loop_state):
    save(self, step, state, loop_state)
    if when == "after" and step == at and "finetune" in self.directory:
      self.wait()
      kill()
  checkpoint.Checkpointer.save = killing_save
  write_result = loop.write_json_atomic
  def killing_write_result(path, data):
    if when == "result" and "finetune" in path:
      kill()
    write_result(path, data)
  loop.write_json_atomic = killing_write_result
  sys.argv = ["mec_jax.main", *sys.argv[3:]]
  runpy.run_module("mec_jax.main", run_name="__main__")
  """
)


def _run(workdir, when="never", at=0):
  flags = [f"--config={REPO / 'configs' / 'smoke.py'}", f"--workdir={workdir}"]
  flags += [f"--config.{key}={value}" for key, value in SETTINGS.items()]
  return subprocess.run(
    [sys.executable, "-c", _DRIVER, when, str(at), *flags],
    capture_output=True,
    text=True,
    env={**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"},
    cwd=workdir.parent,  # nothing lands in the repository, whatever the run writes
    timeout=300,
  )


def _kept_best_is_on_disk(workdir):
  """The invariant: the latest checkpoint's best step is on disk."""
  checkpointer = Checkpointer(str(workdir / "finetune" / "checkpoints"))
  try:
    latest = checkpointer.latest_step()
    if latest is not None:
      best = checkpointer.loop_state(latest)["best_step"]
      assert best is None or best in checkpointer.all_steps(), (best, checkpointer.all_steps())
  finally:
    checkpointer.close()


def test_sigkill_at_many_moments_of_stage_c_then_rerun_gives_the_same_report(
  stages_ab, reference, tmp_path
):
  # One workdir killed again and again, each rerun resuming from the previous kill; the moments
  # progress through stage C: during the first save, during the best epoch's save, during a
  # mid-epoch save after the best epoch, during the first non-improving epoch end's save, after
  # a random later save, before result.json.
  best = reference[1].best_step
  after_best = next(step for step in SAVES if step > best and step % STEPS_PER_EPOCH)
  epoch_end_after_best = best + STEPS_PER_EPOCH
  later = random.Random(21).choice([s for s in SAVES if s > after_best])
  moments = [
    ("during", SAVES[0]),
    ("during", best),
    ("during", after_best),
    ("during", epoch_end_after_best),
    ("after", later),
    ("result", 0),
  ]
  moments = sorted(set(moments), key=lambda m: (m[0] == "result", m[1], m[0] == "after"))
  # Where each rerun resumes: the save before a kill during a save, the save after it, the end.
  expected = [
    {"during": max([s for s in SAVES if s < at], default=None), "after": at}.get(when, SAVES[-1])
    for when, at in moments
  ]
  workdir = tmp_path / "w"
  shutil.copytree(stages_ab, workdir)
  for when, at in moments:
    proc = _run(workdir, when, at)
    assert proc.returncode == -signal.SIGKILL, (when, at, proc.stderr[-3000:])
    assert not (workdir / "finetune" / "result.json").exists()
    _kept_best_is_on_disk(workdir)
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  resumes = [
    json.loads(line)["step"]
    for line in (workdir / "finetune" / "metrics.jsonl").read_text().splitlines()
    if json.loads(line)["event"] == "resume"
  ]
  assert resumes == [step for step in expected if step is not None]
  report = json.loads((workdir / "report.json").read_text())
  _same_run(report, loop.load_result(str(workdir), "finetune"), reference)


def test_disk_full_during_stage_c_then_rerun_completes(stages_ab, reference, tmp_path, monkeypatch):
  from orbax.checkpoint._src.handlers import json_checkpoint_handler

  write = json_checkpoint_handler.JsonCheckpointHandler._save_fn

  def full_at(step):
    async def save_fn(self, x, directory):
      if f"finetune/checkpoints/{step}." in str(directory):  # Orbax's temporary step directory
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
      return await write(self, x, directory)

    return save_fn

  workdir = tmp_path / "w"
  shutil.copytree(stages_ab, workdir)
  best = reference[1].best_step
  for step in (best, best + STEPS_PER_EPOCH):  # the best epoch's save, the epoch end after it
    monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", full_at(step))
    with pytest.raises(ArtifactError, match=rf"cannot save checkpoint step {step}: .*No space"):
      pipeline.run(_config(), str(workdir))
    monkeypatch.undo()
    _kept_best_is_on_disk(workdir)
  report = pipeline.run(_config(), str(workdir))
  _same_run(report, loop.load_result(str(workdir), "finetune"), reference)
