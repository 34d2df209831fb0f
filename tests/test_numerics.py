"""Numerical guards: a NaN loss stops with the step named and the last good checkpoint kept; a
NaN stage-A table is never saved, and one on disk stops stage B naming the field's file."""

import os
import shutil

import numpy as np
import pytest
from flax import nnx

from mec_jax import pipeline
from mec_jax.errors import ArtifactError
from mec_jax.layers import FieldEmbedding
from mec_jax.models import registry
from mec_jax.train import loop
from mec_jax.train import optimizer as optim
from mec_jax.train.checkpoint import Checkpointer
from tests.conftest import quick_config

VOCABS = [30, 6]


def _splits():
  rng = np.random.default_rng(0)
  out = {}
  for name, rows in (("train", 800), ("valid", 200)):
    ids = np.stack([rng.integers(0, v, rows) for v in VOCABS], axis=1).astype(np.int32)
    label = (rng.random(rows) < 0.3).astype(np.float32)
    out[name] = {"ids": ids, "values": np.ones(ids.shape, np.float32), "label": label}
  return out


def test_nan_loss_keeps_the_last_good_checkpoint(tmp_path):
  rngs = nnx.Rngs(params=0, dropout=1)
  embedding = FieldEmbedding.full(VOCABS, 4, rngs=rngs)
  model = registry.build_model("deepfm", embedding, rngs=rngs, hidden_units=(8,))
  splits = _splits()
  config = loop.TrainConfig(
    batch_size=80, epochs=3, checkpoint_every_steps=4, log_every_steps=2, progress=False
  )

  def poison(step):  # from step 6 on every batch the loader gathers has NaN values
    if step == 6:
      splits["train"]["values"][:] = np.nan

  with pytest.raises(
    loop.NonFiniteLossError,
    match=r"loss is nan at step (\d+) .*last good "
    r"checkpoint \(step (\d+)\) is kept",
  ) as err:
    loop.fit(model, splits, train_config=config, workdir=str(tmp_path), on_step=poison)
  bad_step = int(err.value.args[0].split("at step ")[1].split()[0])
  good_step = int(err.value.args[0].split("checkpoint (step ")[1].split(")")[0])
  assert 6 < bad_step and good_step < bad_step
  checkpointer = Checkpointer(str(tmp_path / "pretrain" / "checkpoints"))
  assert max(checkpointer.all_steps()) == good_step
  _, params, _, other = loop.steps.split_model(model)
  tx = optim.make_optimizer(config.learning_rate)
  state = loop.steps.init_train_state(params, other, tx)
  restored, loop_state = checkpointer.restore(good_step, state)
  assert loop_state["step"] == good_step
  for leaf in nnx.to_flat_state(restored.params):
    assert np.isfinite(np.asarray(leaf[1][...])).all()
  checkpointer.close()


def test_nan_in_a_stage_a_table_stops_stage_b(finished_quick, tmp_path):
  _, workdir, _ = finished_quick
  copy_dir = str(tmp_path / "copy")
  shutil.copytree(workdir, copy_dir)
  for stage_dir in ("quantize", "swap", "finetune"):
    shutil.rmtree(os.path.join(copy_dir, stage_dir))
  path = os.path.join(copy_dir, "pretrain", "tables", "cat0.npz")
  arrays = dict(np.load(path))
  arrays["embedding"][17, 2] = np.nan
  np.savez(path, **arrays)
  config = quick_config()
  config.stage = "quantize"
  with pytest.raises(
    ArtifactError,
    match=rf"{path}: embedding has NaN/Inf in 1 of \d+ rows "
    r"\(first: row 17\)",
  ):
    pipeline.run(config, copy_dir)
