"""``pq``'s (M, K) under a byte budget: the candidates, the selection on validation, the key."""

from __future__ import annotations

import math

import numpy as np
import pytest

from configs import smoke
from mec_jax import artifacts, methods, pipeline
from mec_jax.data.schema import FeatureMap, FieldSpec
from mec_jax.errors import ConfigError
from mec_jax.methods import base, budget, pq


@pytest.mark.parametrize(
  ("vocabs", "dim", "ratio"),
  [
    ([944, 1651, 383], 40, 25),
    ([944, 1651, 383], 40, 50),
    ([44_000, 9_600], 16, 10),
    ([300], 8, 4),
  ],
)
def test_candidates_fit_the_budget_and_take_each_m_largest_k(vocabs, dim, ratio):
  total = int(sum(vocabs) * dim * 4 / ratio)
  shapes = budget.pq_candidates(vocabs, dim, total, 99)
  assert shapes[0] == budget.plan_pq(vocabs, dim, total)
  assert budget.pq_candidates(vocabs, dim, total, 1) == shapes[:1]
  assert budget.pq_candidates(vocabs, dim, total, 2) == shapes[:2]
  ms = [m for m, _ in shapes]
  assert len(set(ms)) == len(ms)
  for m, k in shapes:
    assert dim % m == 0 and dim // m >= 4 and k in [2**b for b in range(1, 9)]
    # bytes by hand: ceil(V M log2 K / 8) codes per field, K d float32 codebooks per field
    by_hand = sum(math.ceil(v * m * math.log2(k) / 8) + k * dim * 4 for v in vocabs)
    assert budget.pq_bytes(vocabs, dim, m, k) == by_hand <= total
    assert k == 256 or budget.pq_bytes(vocabs, dim, m, 2 * k) > total  # the largest K
  for m in (m for m in range(1, dim + 1) if dim % m == 0 and dim // m >= 4 and m not in ms):
    assert budget.pq_bytes(vocabs, dim, m, 2) > total  # an M left out has no K that fits
  used = [budget.pq_bytes(vocabs, dim, *s) for s in shapes]
  assert used == sorted(used, reverse=True)  # the most bytes first


def _stage_a(tmp_path, vocabs=(300,), dim=16):
  rng = np.random.default_rng(0)
  specs, paths = [], {}
  for i, vocab in enumerate(vocabs):
    counts = np.sort(rng.zipf(1.3, vocab).clip(1, 10_000))[::-1].copy()
    specs.append(FieldSpec(f"f{i}", "categorical", vocab, vocab - 1, counts))
    paths[f"f{i}"] = str(tmp_path / f"f{i}.npz")
    table = rng.normal(size=(vocab, dim)).astype(np.float32)
    artifacts.save_stage_a_table(paths[f"f{i}"], f"f{i}", table, rng.normal(size=vocab), counts)
  return FeatureMap("toy", specs), paths


def _config(count, ratio=6.0, dim=16):
  config = smoke.get_config()
  config.quantize.variant = "kmeans"
  config.quantize.min_vocab = 100
  config.compress.target_ratio = ratio
  config.compress.pq_candidates = count
  config.model.embed_dim = dim  # 16: M in (1, 2, 4), three candidates
  return config


def _ctx(tmp_path, paths, evaluate):
  return base.StageB(
    table_path=paths.__getitem__, quantize_dir=str(tmp_path / "q"), evaluate=evaluate
  )


def test_selection_keeps_the_best_swap_in_and_its_bytes_are_exact(tmp_path):
  fm, paths = _stage_a(tmp_path)
  config = _config(4)
  shapes = budget.pq_shapes(config, fm)
  assert len(shapes) >= 3
  seen = []
  rng = np.random.default_rng(1)
  fake = {shape: float(rng.uniform()) for shape in shapes}
  fake[shapes[2]] = 2.0  # the third candidate validates best

  def evaluate(arts):
    shape = (arts["f0"].num_subspaces, arts["f0"].codebook_size)
    assert all((a.num_subspaces, a.codebook_size) == shape for a in arts.values())
    used = sum(a.nbytes() for a in arts.values())
    assert used == budget.pq_bytes([300], 16, *shape) <= budget.budget_bytes(config, fm)
    seen.append(shape)
    return {"valid_auc": fake[shape] / 2, "valid_logloss": 0.5, "valid_score": fake[shape]}

  arts = pq.build(config, fm, _ctx(tmp_path, paths, evaluate))
  assert seen == shapes
  best = max(shapes, key=fake.get)
  for art in arts.values():
    assert (art.num_subspaces, art.codebook_size) == best == shapes[2]
    scores = art.knobs()["shape_selection"]
    assert list(scores) == [pq.shape_label(s) for s in shapes]
    assert scores[pq.shape_label(best)]["valid_score"] == 2.0
  again = pq.build(config, fm, _ctx(tmp_path, paths, evaluate))  # the saved tables are reused
  assert len(seen) == len(shapes)
  for name, art in again.items():
    assert (art.num_subspaces, art.codebook_size) == best
    np.testing.assert_array_equal(art.codes, arts[name].codes)
    assert "shape_selection" in art.knobs()


@pytest.mark.parametrize("evaluated", [True, False])
def test_one_candidate_or_no_stage_a_model_is_the_most_bytes_rule(tmp_path, evaluated):
  fm, paths = _stage_a(tmp_path)
  config = _config(1 if evaluated else 4)
  calls = []

  def evaluate(arts):
    calls.append(arts)
    return {"valid_auc": 0.5, "valid_logloss": 0.5, "valid_score": 0.0}

  arts = pq.build(config, fm, _ctx(tmp_path, paths, evaluate if evaluated else None))
  assert calls == []
  planned = budget.plan_pq([300], 16, budget.budget_bytes(config, fm))
  old = budget.pq_config(config, fm).quantize
  assert planned == (old.num_subspaces, old.codebook_size)
  for art in arts.values():
    assert (art.num_subspaces, art.codebook_size) == planned
    assert "shape_selection" not in art.knobs()


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "3"])
def test_bad_pq_candidates_is_named(value):
  config = _config(1)
  with config.ignore_type():
    config.compress.pq_candidates = value
  with pytest.raises(ConfigError, match=r"^config\.compress\.pq_candidates=") as err:
    methods.validate(config)
  assert "\n" not in str(err.value)


def test_report_shows_the_shapes_tried_on_smoke(tmp_path):
  config = _config(2, ratio=8.0, dim=8)  # M in (1, 2)
  config.quantize.min_vocab = 200
  config.train.epochs = 1
  config.finetune.swap_in = True
  report = pipeline.run(config, str(tmp_path))
  fields = report["compressed_fields"]
  assert sorted(fields) == ["cat0", "cat1"]
  tried = fields["cat0"]["shape_selection"]
  assert len(tried) == 2 and all(0 <= s["valid_auc"] <= 1 for s in tried.values())
  kept = max(tried, key=lambda k: tried[k]["valid_score"])
  assert kept == pq.shape_label((fields["cat0"]["num_subspaces"], fields["cat0"]["codebook_size"]))
  shape = (fields["cat0"]["num_subspaces"], fields["cat0"]["codebook_size"])
  used = report["memory"]["compressed_fields_only"]["compressed_bytes_packed"]
  vocabs = [fields[name]["vocab_size"] for name in ("cat0", "cat1")]
  assert used == budget.pq_bytes(vocabs, 8, *shape)
  assert report["memory"]["compressed_fields_only"]["ratio_packed"] >= 8.0
