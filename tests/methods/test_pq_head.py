"""``pq_head`` (popularity-split PQ): lookup, bytes, H = 0 as plain PQ, selection, end to end."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import smoke
from mec_jax import artifacts, export, methods, pipeline
from mec_jax.compression import quantizer
from mec_jax.data.schema import FeatureMap, FieldSpec
from mec_jax.methods import base, budget
from mec_jax.methods import pq_head as ph


def _table(rng, vocab=50, heads=(3, 7, 20, 49), m=2, k=8, s=3, prefix=False):
  heads = np.arange(len(heads)) if prefix else np.asarray(heads)
  return ph.PQHeadArtifact(
    head_rows=rng.normal(size=(len(heads), m * s)),
    head_ids=heads,
    codes=rng.integers(0, k, size=(vocab - len(heads), m)),
    codebooks=rng.normal(size=(m, k, s)),
    head_first_order=rng.normal(size=len(heads)),
    first_order=rng.normal(size=(m, k)),
    name="f",
  )


def _reference(table, ids):
  """Row and first-order weight of every id, by an explicit walk over the vocabulary."""
  heads = list(range(table.num_head)) if table.head_ids is None else list(table.head_ids)
  tail = [v for v in range(table.vocab_size) if v not in heads]
  rows, fo = [], []
  for v in np.asarray(ids).ravel():
    v = int(v) if 0 <= v < table.vocab_size else table.vocab_size - 1
    if v in heads:
      rows.append(table.head_rows[heads.index(v)])
      fo.append(table.head_first_order[heads.index(v)])
    else:
      code = table.codes[tail.index(v)]
      rows.append(np.concatenate([table.codebooks[j, c] for j, c in enumerate(code)]))
      fo.append(sum(table.first_order[j, c] for j, c in enumerate(code)))
  shape = np.shape(ids)
  return np.reshape(rows, (*shape, table.dim)), np.reshape(fo, shape)


@pytest.mark.parametrize("prefix", [False, True])
def test_lookup_equals_numpy_reference(prefix):
  table = _table(np.random.default_rng(0), prefix=prefix)
  assert (table.head_ids is None) == prefix
  ids = np.array([[0, 3, 7, 20], [49, 48, 1, 2], [-1, 50, 99, 25]])
  rows, fo = _reference(table, ids)
  np.testing.assert_allclose(table.lookup(ids), rows, rtol=1e-6)
  layer = table.to_layer(rngs=nnx.Rngs(0))
  np.testing.assert_allclose(np.asarray(layer(jnp.asarray(ids))), rows, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(layer.first_order(jnp.asarray(ids))), fo, rtol=1e-5)
  jitted = nnx.jit(lambda layer, ids: layer(ids))
  np.testing.assert_allclose(np.asarray(jitted(layer, jnp.asarray(ids))), rows, rtol=1e-6)


def test_gradients_reach_head_rows_of_head_ids_only():
  table = _table(np.random.default_rng(1))
  layer = table.to_layer(rngs=nnx.Rngs(0))
  ids = jnp.asarray([3, 3, 7, 0, 0, 0])  # head slots 0, 0, 1; id 0 is in the tail (3 times)

  def loss(layer):
    return layer(ids).sum()

  grads = nnx.grad(loss)(layer)
  head = np.asarray(grads.pqh_head_rows[...])
  np.testing.assert_allclose(head[:, 0], [2, 1, 0, 0])
  books = np.asarray(grads.pqh_codebooks[...])
  assert books.sum() == pytest.approx(3 * table.dim)  # id 0's M codewords, 3 times


def test_bytes_by_hand():
  table = _table(np.random.default_rng(2), vocab=100, heads=(1, 5, 9), m=2, k=16, s=4)
  head, ids = 3 * 8 * 4, math.ceil(3 * 7 / 8)  # 7 bits name one of 100 ids
  codes, books = math.ceil(97 * 2 * 4 / 8), 2 * 16 * 4 * 4
  assert table.nbytes(packed=True) == head + ids + codes + books
  assert table.nbytes(packed=False) == head + 3 * 4 + 97 * 2 + books
  assert table.first_order_nbytes() == (3 + 2 * 16) * 4
  prefix = _table(np.random.default_rng(2), vocab=100, heads=(0, 1, 2), m=2, k=16, s=4)
  assert prefix.head_ids is None and prefix.nbytes() == head + codes + books
  assert prefix.knobs()["head_bytes"] == head and prefix.knobs()["head_map"] == "prefix"


def test_plan_head_counts_the_ids_when_the_head_is_not_a_prefix():
  dim = 4
  ordered = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 1])
  assert ph.plan_head(ordered, dim, 3 * 16 + 15) == (3, True)
  shuffled = ordered[[3, 0, 1, 2, 4, 5, 6, 7, 8, 9]]  # top 3: ids 1, 2, 3
  num, prefix = ph.plan_head(shuffled, dim, 3 * 16 + 2)  # 3 rows + 3 ids of 4 bits = 50 bytes
  assert (num, prefix) == (3, False)
  assert ph.plan_head(shuffled, dim, 3 * 16 + 1) == (2, False)
  assert ph.plan_head(ordered, dim, 10**6) == (9, True)  # a tail of one id stays
  np.testing.assert_array_equal(ph.head_ids(shuffled, 3), [1, 2, 3])


def _stage_a(tmp_path, vocab=300, dim=8, seed=0):
  rng = np.random.default_rng(seed)
  counts = np.sort(rng.zipf(1.3, vocab).clip(1, 10_000))[::-1].copy()
  spec = FieldSpec("f", "categorical", vocab, vocab - 1, counts)
  path = str(tmp_path / "f.npz")
  table = (rng.normal(size=(vocab, dim)) * np.log1p(counts)[:, None] / 5).astype(np.float32)
  artifacts.save_stage_a_table(path, "f", table, rng.normal(size=vocab), counts)
  return spec, path, table


def _config(fractions, ratio=10.0):
  config = smoke.get_config()
  config.quantize.variant = "kmeans"
  config.quantize.min_vocab = 100
  config.compress.method = "pq_head"
  config.compress.target_ratio = ratio
  config.compress.head_fraction = fractions
  return config


def test_no_head_is_plain_pq(tmp_path):
  spec, path, _ = _stage_a(tmp_path)
  config = _config((0.0,))
  fm = FeatureMap("toy", [spec])
  heads, mk = ph.plan(config, fm, 0.0)
  pq_config = budget.pq_config(config, fm)
  assert heads == [(0, True)]
  assert mk == (pq_config.quantize.num_subspaces, pq_config.quantize.codebook_size)
  ctx = base.StageB(table_path=lambda name: path, quantize_dir=str(tmp_path / "q"))
  art = ph.build_field(config, spec, path, (0, True), mk, 0.0, ctx, 0)
  settings = quantizer.QuantizeSettings.from_config(pq_config.quantize)
  table, bias = artifacts.load_stage_a_table(path, spec, 8)
  key = jax.random.fold_in(jax.random.key(config.quantize.seed), 0)
  plain = quantizer.quantize_table(key, table, spec.counts, settings, bias=bias, name="f")
  ids = np.arange(-2, spec.vocab_size + 2)
  np.testing.assert_allclose(art.lookup(ids), plain.lookup(ids), rtol=1e-6)
  assert art.nbytes() == plain.nbytes() and art.nbytes(False) == plain.nbytes(False)
  np.testing.assert_allclose(art.first_order, plain.first_order, rtol=1e-6)


def test_selection_keeps_the_best_fraction_and_fits_the_budget(tmp_path):
  spec, path, table = _stage_a(tmp_path)
  fm = FeatureMap("toy", [spec])
  config = _config((0.0, 0.25, 0.5))
  seen = []

  def evaluate(arts):  # pretend the 0.25 head validates best
    seen.append(arts["f"].head_fraction)
    score = -abs(arts["f"].head_fraction - 0.25)
    return {"valid_auc": 0.7 + score, "valid_logloss": 0.5, "valid_score": score}

  qdir = str(tmp_path / "q")
  ctx = base.StageB(table_path=lambda name: path, quantize_dir=qdir, evaluate=evaluate)
  arts = ph.build(config, fm, ctx)
  assert seen == [0.0, 0.25, 0.5]
  art = arts["f"]
  assert art.head_fraction == 0.25 and art.num_head > 0 and art.head_ids is None
  np.testing.assert_array_equal(art.head_rows, table[: art.num_head])
  assert art.nbytes() <= budget.budget_bytes(config, fm)
  assert set(art.knobs()["head_selection"]) == {"0.0", "0.25", "0.5"}
  again = ph.build(config, fm, ctx)  # the saved artifact is reused
  assert len(seen) == 3 and again["f"].num_head == art.num_head
  np.testing.assert_allclose(again["f"].lookup(np.arange(300)), art.lookup(np.arange(300)))


def test_runs_end_to_end_on_smoke(tmp_path):
  config = _config((0.5,), ratio=8.0)
  config.train.epochs = 1
  config.quantize.min_vocab = 200
  report = pipeline.run(config, str(tmp_path))
  fields = report["compressed_fields"]
  assert sorted(fields) == ["cat0", "cat1"]
  for name, field in fields.items():
    assert field["method"] == "pq_head" and field["head_rows"] > 0
    art = ph.PQHeadArtifact.load(str(tmp_path / "quantize" / f"{name}.pq_head.npz"))
    assert report["memory"]["per_field"][name]["compressed_bytes_packed"] == art.nbytes()
    assert field["head_bytes"] + field["tail_bytes"] == art.nbytes()
  assert report["memory"]["compressed_fields_only"]["ratio_packed"] >= 8.0
  assert set(report["compressed_finetune"]) >= {"test_auc", "valid_auc"}
  # stage C trained the head rows (the tables written are the kept model's)
  tuned = ph.PQHeadArtifact.load(str(tmp_path / "finetune" / "tables" / "cat0.npz"))
  stage_b = ph.PQHeadArtifact.load(str(tmp_path / "quantize" / "cat0.pq_head.npz"))
  assert tuned.num_head == stage_b.num_head
  moved = not np.array_equal(tuned.head_rows, stage_b.head_rows)
  assert moved == (report["compressed"]["source"] == "finetune")
  np.testing.assert_array_equal(tuned.codes, stage_b.codes)  # codes are frozen
  manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
  assert any("pqh_head_rows" in p["path"] for p in manifest["params"])
  served = export.load(str(tmp_path / "export"))
  ids = np.zeros((3, served.num_fields), np.int32)
  assert np.isfinite(np.asarray(served(ids, np.ones((3, served.num_fields), np.float32)))).all()
  assert methods.get("pq_head") is ph.METHOD


def test_bad_head_fraction_is_named():
  config = _config((0.5, 1.0))
  with pytest.raises(Exception, match="compress.head_fraction"):
    methods.validate(config)
