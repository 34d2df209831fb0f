"""`fit`: metrics/checkpoint files, resume after a kill, finished-run reuse, NaN, plateau."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from mec_jax.errors import ArtifactError
from mec_jax.layers import FieldEmbedding
from mec_jax.models import registry
from mec_jax.train import loop

VOCABS = [40, 20, 6]


def _splits(seed=0):
  rng = np.random.default_rng(seed)
  weights = [rng.normal(size=v) for v in VOCABS]
  out = {}
  for name, rows in (("train", 960), ("valid", 300), ("test", 300)):
    ids = np.stack([rng.integers(0, v, rows) for v in VOCABS], axis=1).astype(np.int32)
    logit = sum(2 * weights[f][ids[:, f]] for f in range(len(VOCABS)))
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    out[name] = {"ids": ids, "values": np.ones(ids.shape, np.float32), "label": label}
  return out


def _model(**hparams):
  rngs = nnx.Rngs(params=0, dropout=1)
  embedding = FieldEmbedding.full(VOCABS, 4, rngs=rngs, init_std=0.01)
  hparams = {"hidden_units": (8,), "dropout": 0.1} | hparams
  return registry.build_model("deepfm", embedding, rngs=rngs, **hparams)


def _config(**overrides):
  base = dict(
    batch_size=80,
    eval_batch_size=512,
    epochs=3,
    learning_rate=1e-2,
    patience=2,
    checkpoint_every_steps=5,
    log_every_steps=4,
    progress=False,
    seed=7,
  )
  return loop.TrainConfig(**(base | overrides))


def _lines(path):
  with open(path) as fh:
    return [json.loads(line) for line in fh]


class Kill(Exception):
  pass


def _kill_at(step_to_kill):
  def on_step(step):
    if step == step_to_kill:
      raise Kill()

  return on_step


def test_fit_writes_metrics_checkpoints_and_result(tmp_path):
  splits = _splits()
  model = _model()
  result = loop.fit(model, splits, train_config=_config(), workdir=str(tmp_path), name="pretrain")
  run = tmp_path / "pretrain"
  assert result.test["auc"] > 0.7 and result.valid["auc"] > 0.7
  assert [h["epoch"] for h in result.history] == [1, 2, 3]
  assert result.steps == 3 * (960 // 80)
  events = [line["event"] for line in _lines(run / "metrics.jsonl")]
  assert events.count("valid") == 3 and events.count("test") == 1 and "train" in events
  assert loop.load_result(str(tmp_path), "pretrain") == result
  steps_kept = sorted(int(d) for d in os.listdir(run / "checkpoints") if d.isdigit())
  assert result.best_step in steps_kept and result.steps in steps_kept and len(steps_kept) <= 3
  # The model now holds the best state: evaluating it reproduces the stored test metrics.
  again = loop.evaluate_splits(model, splits, ("test",), _config())
  assert again["test_auc"] == pytest.approx(result.test["auc"], abs=1e-6)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
  splits = _splits()
  reference = loop.fit(_model(), splits, train_config=_config(), workdir=str(tmp_path / "a"))
  with pytest.raises(Kill):  # killed at step 18 of epoch 2; last checkpoint at step 15
    loop.fit(
      _model(), splits, train_config=_config(), workdir=str(tmp_path / "b"), on_step=_kill_at(18)
    )
  seen = []
  resumed = loop.fit(
    _model(), splits, train_config=_config(), workdir=str(tmp_path / "b"), on_step=seen.append
  )
  assert seen[0] == 16  # continues with the batch after the checkpoint, not from step 1
  resume = [
    x for x in _lines(tmp_path / "b" / "pretrain" / "metrics.jsonl") if x["event"] == "resume"
  ]
  assert resume[0]["step"] == 15 and resume[0]["epoch"] == 1 and resume[0]["next_batch"] == 3
  assert resumed.steps == reference.steps
  assert resumed.metrics() == pytest.approx(reference.metrics(), abs=1e-6)
  for a, b in zip(resumed.history, reference.history, strict=True):
    assert a["valid_auc"] == pytest.approx(b["valid_auc"], abs=1e-6)


def test_kills_after_the_best_epoch_resume_to_the_uninterrupted_run(tmp_path):
  # lr 0.1: epoch 1 (step 12) is the best, epochs 2-4 do not improve. Each rerun reopens the
  # checkpoints; the best step must survive the saves after it (Orbax's BestN forgot it).
  splits, config = _splits(), _config(learning_rate=0.1, epochs=4, patience=3)
  reference = loop.fit(_model(), splits, train_config=config, workdir=str(tmp_path / "a"))
  assert reference.best_step == 12 and reference.steps == 48
  for kill in (26, 41):  # resumes from 25, then from 40
    with pytest.raises(Kill):
      loop.fit(
        _model(), splits, train_config=config, workdir=str(tmp_path / "b"), on_step=_kill_at(kill)
      )
  resumed = loop.fit(_model(), splits, train_config=config, workdir=str(tmp_path / "b"))
  assert resumed.best_step == 12 and resumed.steps == reference.steps
  assert resumed.metrics() == pytest.approx(reference.metrics(), abs=1e-6)
  kept = sorted(
    int(d) for d in os.listdir(tmp_path / "b" / "pretrain" / "checkpoints") if d.isdigit()
  )
  assert kept == [12, 45, 48]


def test_missing_best_checkpoint_is_named(tmp_path):
  """A run directory whose best step is gone (deleted by an older mec_jax) says so, by name."""
  splits, config = _splits(), _config(learning_rate=0.1, epochs=2)
  assert loop.fit(_model(), splits, train_config=config, workdir=str(tmp_path)).best_step == 12
  run = tmp_path / "pretrain"
  shutil.rmtree(run / "checkpoints" / "12")
  with pytest.raises(
    ArtifactError, match=r"finished run's best epoch \(step 12\) is missing.*delete"
  ):
    loop.fit(_model(), splits, train_config=config, workdir=str(tmp_path))
  os.remove(run / "result.json")  # killed before the end: resumes from step 24
  with pytest.raises(ArtifactError, match=r"step 24's best epoch \(step 12\) is missing \(avail"):
    loop.fit(_model(), splits, train_config=config, workdir=str(tmp_path))


def test_finished_run_is_restored_not_retrained(tmp_path):
  splits = _splits()
  first_model = _model()
  first = loop.fit(first_model, splits, train_config=_config(), workdir=str(tmp_path))
  lines = len(_lines(tmp_path / "pretrain" / "metrics.jsonl"))
  model = _model()
  second = loop.fit(
    model, splits, train_config=_config(), workdir=str(tmp_path), on_step=_kill_at(1)
  )  # would raise if any step ran
  assert second == first
  assert len(_lines(tmp_path / "pretrain" / "metrics.jsonl")) == lines
  jax.tree.map(
    np.testing.assert_array_equal, nnx.state(model, nnx.Param), nnx.state(first_model, nnx.Param)
  )


def test_plateau_decays_lr_then_stops_early(tmp_path):
  # An lr far below float32 resolution leaves the weights unchanged, so the score never improves.
  result = loop.fit(
    _model(dropout=0.0),
    _splits(),
    workdir=str(tmp_path),
    train_config=_config(learning_rate=1e-15, epochs=10, lr_decay=0.5),
  )
  assert [h["improved"] for h in result.history] == [True, False, False]
  assert [h["lr"] for h in result.history] == pytest.approx([1e-15, 1e-15, 5e-16])
  assert result.best_epoch == 1


def test_nan_loss_stops_with_a_clear_error(tmp_path):
  splits = _splits()
  splits["train"]["values"][100:, 0] = np.nan
  with pytest.raises(loop.NonFiniteLossError, match=r"at step \d+ \(epoch 1\).*learning_rate"):
    loop.fit(_model(), splits, train_config=_config(), workdir=str(tmp_path))


def test_bad_input_raises_value_error(tmp_path):
  splits = _splits()
  splits["valid"]["ids"][3, 1] = 20
  with pytest.raises(ValueError, match=r"valid: id 20 at row 3, field 1 is outside.*\[0, 20\)"):
    loop.fit(_model(), splits, train_config=_config(), workdir=str(tmp_path))
  with pytest.raises(ValueError, match="no 'valid' split"):
    loop.fit(_model(), {"train": splits["train"]}, train_config=_config(), workdir=str(tmp_path))
  with pytest.raises(ValueError, match="train.monitor"):
    _config(monitor="gauc")


def test_train_config_from_config():
  from configs import default

  config = default.get_config()
  config.model.embedding_regularizer = 1e-5
  cfg = loop.TrainConfig.from_config(config, progress=False)
  assert cfg.batch_size == config.train.batch_size and cfg.embedding_regularizer == 1e-5
  assert not cfg.progress
  assert loop.TrainConfig.from_config(config.train).embedding_regularizer == 0.0
