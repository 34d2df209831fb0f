"""The cce and robez methods: budgets, stage-A warm starts against numpy, artifacts, smoke runs."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from mec_jax import methods, pipeline
from mec_jax.compression.table import packed_nbytes
from mec_jax.errors import ConfigError
from mec_jax.layers.cce import CCETable
from mec_jax.layers.robez import RobeTable
from mec_jax.methods import budget, cce, robez
from tests.methods.method_fixtures import FieldStub, smoke_config


def test_plan_cce_takes_the_most_clusters_within_each_share():
  vocabs, dim, cols = [44_000, 9_600, 2_000], 40, 4
  total = int(sum(vocabs) * dim * 4 / 25)
  clusters = budget.plan_cce(vocabs, dim, cols, total)
  for vocab, k in zip(vocabs, clusters, strict=True):
    share = total * vocab // sum(vocabs)
    used = 2 * k * dim * 4 + packed_nbytes(vocab, cols, k)
    assert 1 <= k <= vocab and used <= share
    assert 2 * (k + 1) * dim * 4 + packed_nbytes(vocab, cols, k + 1) > share
  with pytest.raises(ConfigError, match="below CCE's smallest"):
    budget.plan_cce([1000], 40, 4, 200)
  one_cluster = budget.cce_bytes(383, 16, 4, 1)  # MovieLens zip3 at 100x: fits 1 cluster, not 2
  assert budget.cce_bytes(383, 16, 4, 2) > one_cluster
  with pytest.raises(ConfigError, match="2 clusters a column"):
    budget.plan_cce([383], 16, 4, one_cluster)


def test_plan_robez_fills_the_budget():
  sizes = budget.plan_robez([600, 300], 900)
  assert sizes == [150, 75] and sum(sizes) * 4 <= 900


def test_robez_warm_start_is_the_weighted_least_squares_fit():
  rng = np.random.default_rng(0)
  vocab, dim, size = 30, 4, 17
  table = rng.normal(size=(vocab, dim)).astype(np.float32)
  counts = rng.integers(1, 20, vocab).astype(np.float64)
  art = robez.build_field(
    FieldStub(vocab), table, None, counts, smoke_config(robez_blocks=2), size, 0
  )
  # Independent: min_a sum_v n_v ||x_v - A_v a||^2 by numpy's least squares.
  design = np.zeros((vocab * dim, size))
  design[np.arange(vocab * dim), art.positions().reshape(-1)] = 1.0
  root = np.sqrt(np.repeat(counts, dim))
  fit = np.linalg.lstsq(design * root[:, None], table.reshape(-1) * root, rcond=None)[0]
  np.testing.assert_allclose(art.array, fit, atol=1e-5)


def test_cce_warm_start_clusters_and_fits_the_residual():
  rng = np.random.default_rng(1)
  vocab, dim, k = 400, 8, 16
  centers = rng.normal(size=(k, dim))
  table = (centers[rng.integers(0, k, vocab)] + 0.05 * rng.normal(size=(vocab, dim))).astype(
    np.float32
  )
  counts = rng.integers(1, 50, vocab).astype(np.float64)
  bias = rng.normal(size=vocab).astype(np.float32)
  art = cce.build_field(FieldStub(vocab), table, bias, counts, smoke_config(cce_columns=2), k, 0)
  assert art.assignments.dtype == np.uint8 and art.assignments.shape == (vocab, 2)
  layer = art.to_layer(rngs=nnx.Rngs(0))
  rec = np.asarray(layer(np.arange(vocab)))
  # Clusters alone (hashed rows zeroed) recover the planted structure; the hashed fit only helps.
  clusters_only = CCETable(art.clustered, 0 * art.hashed, art.assignments, None)
  base = np.asarray(clusters_only.to_layer(rngs=nnx.Rngs(0))(np.arange(vocab)))
  err = lambda r: float(np.sum(counts[:, None] * (r - table) ** 2) / counts.sum())
  assert err(base) < 0.05 * float(np.mean(table**2)) and err(rec) <= err(base) + 1e-6
  scratch = cce.build_field(
    FieldStub(vocab), table, bias, counts, smoke_config(init_tables="random"), k, 0
  )
  assert np.abs(scratch.clustered).max() < 1e-2 and not scratch.hashed.any()
  assert not np.array_equal(scratch.assignments, art.assignments)


@pytest.mark.parametrize("method", ["cce", "robez"])
def test_artifact_round_trip_and_with_layer(method, tmp_path):
  rng = np.random.default_rng(2)
  if method == "cce":
    plain = CCETable(
      rng.normal(size=(2, 5, 3)).astype(np.float32),
      rng.normal(size=(2, 5, 3)).astype(np.float32),
      rng.integers(0, 5, (20, 2)).astype(np.uint8),
      rng.normal(size=(2, 5)).astype(np.float32),
      3,
      "f",
    )
  else:
    plain = RobeTable(
      rng.normal(size=31).astype(np.float32),
      rng.normal(size=5).astype(np.float32),
      20,
      6,
      2,
      1,
      "f",
    )
  art = methods.as_artifact(plain)
  assert isinstance(art, methods.Artifact)
  path = str(tmp_path / f"f.{method}.npz")
  art.save(path)
  back = methods.get(method).artifact.load(path)
  assert back.knobs() == art.knobs() and back.nbytes() == art.nbytes()
  layer = art.to_layer(rngs=nnx.Rngs(0))
  nnx.update(layer, jax.tree.map(lambda x: x * 1.5 + 0.25, nnx.state(layer, nnx.Param)))
  ids = np.array([0, 3, 19, 25, -1])
  again = back.with_layer(layer).to_layer(rngs=nnx.Rngs(1))
  np.testing.assert_allclose(np.asarray(again(ids)), np.asarray(layer(ids)), rtol=1e-6)
  np.testing.assert_allclose(
    np.asarray(again.first_order(ids)), np.asarray(layer.first_order(ids)), rtol=1e-6
  )


def test_bad_divisor_is_a_clear_error():
  for key in ("cce_columns", "robez_blocks"):
    with pytest.raises(ConfigError, match=f"compress.{key}=3; expected a divisor of embed_dim=8"):
      methods.validate(smoke_config(**{key: 3}))
  methods.validate(smoke_config(cce_columns=8, robez_blocks=2))


@pytest.mark.parametrize(("method", "init"), [("cce", "stage_a"), ("robez", "random")])
def test_runs_every_stage_on_smoke_at_the_target_ratio(method, init, tmp_path):
  config = smoke_config(method=method, init_tables=init, target_ratio=8.0)
  config.train.epochs = 1
  report = pipeline.run(config, str(tmp_path))
  fields = report["compressed_fields"]
  assert sorted(fields) == ["cat0", "cat1"] and all(f["method"] == method for f in fields.values())
  mem = report["memory"]["compressed_fields_only"]
  assert 8.0 <= mem["ratio_packed"] <= 8.0 * (1.25 if method == "cce" else 1.01)
  for name in fields:
    assert (tmp_path / "quantize" / f"{name}.{method}.npz").exists()
    assert (tmp_path / "finetune" / "tables" / f"{name}.npz").exists()
  assert np.isfinite(report["compressed"]["test_auc"])
  assert json.loads((tmp_path / "report.json").read_text())["compressed_fields"] == fields
  assert (tmp_path / "export" / "manifest.json").exists()
