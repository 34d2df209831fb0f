"""Budgets of every method, artifact files, and the method dispatch of the pipeline on smoke data."""

import math

import jax
import numpy as np
import pytest
from flax import nnx

from configs import smoke
from mec_jax import methods
from mec_jax.compression.table import CompressedTable
from mec_jax.errors import ArtifactError, ConfigError
from mec_jax.layers.hashed import HashedTable
from mec_jax.layers.qr import QRTable
from mec_jax.layers.rowwise import RowwiseTable


def test_plan_pq_uses_the_most_bytes_within_the_budget():
  vocabs, dim = [44_000, 28_000, 9_600, 2_000], 40
  budget = int(sum(vocabs) * dim * 4 / 25)
  m, k = methods.plan_pq(vocabs, dim, budget)
  used = methods.pq_bytes(vocabs, dim, m, k)
  assert used <= budget
  for m2 in (1, 2, 4, 5, 8, 10):
    for k2 in (2**b for b in range(1, 9)):
      other = methods.pq_bytes(vocabs, dim, m2, k2)
      assert other > budget or other <= used
  with pytest.raises(ConfigError, match="below the smallest PQ"):
    methods.plan_pq(vocabs, dim, 100)


def test_plan_qr_fits_the_budget_and_floors():
  vocabs = [4082, 957]
  rows = lambda v, c: math.ceil(v / c) + c
  budget = sum(vocabs) // 10
  collisions = methods.plan_qr(vocabs, budget)
  assert sum(rows(v, c) for v, c in zip(vocabs, collisions, strict=True)) <= budget
  # The small field's share (96 rows) is below its floor (62 rows at c=31): it gets its floor.
  tight = methods.plan_qr(vocabs, 200)
  assert sum(rows(v, c) for v, c in zip(vocabs, tight, strict=True)) <= 200
  with pytest.raises(ConfigError, match="QR needs at least"):
    methods.plan_qr(vocabs, 150)


def _artifacts(rng):
  return [
    HashedTable(rng.normal(size=(5, 4)).astype(np.float32), None, 20, 3, "mod", "f"),
    QRTable(
      rng.normal(size=(4, 4)).astype(np.float32),
      rng.normal(size=(5, 4)).astype(np.float32),
      rng.normal(size=9).astype(np.float32),
      20,
      "sum",
      "f",
    ),
    RowwiseTable(
      rng.integers(0, 16, (20, 5)).astype(np.uint8),
      np.ones(20, np.float32),
      np.zeros(20, np.float32),
      None,
      4,
      "float16",
      "f",
    ),
  ]


def test_artifacts_round_trip(tmp_path):
  for plain in _artifacts(np.random.default_rng(0)):
    art = methods.as_artifact(plain)
    assert isinstance(art, methods.Artifact) and isinstance(art, type(plain))
    path = str(tmp_path / f"f.{art.method}.npz")
    art.save(path)
    back = methods.get(art.method).artifact.load(path)
    assert type(back) is type(art) and back.knobs() == art.knobs()
    for a, b in zip(
      [getattr(art, f) for f in art.__dataclass_fields__],
      [getattr(back, f) for f in back.__dataclass_fields__],
      strict=True,
    ):
      if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
      else:
        assert a == b
  with pytest.raises(ArtifactError, match="expected 'qr'"):
    methods.get("qr").artifact.load(str(tmp_path / "f.hash.npz"))


def _pq_table(rng):
  return CompressedTable(
    codes=rng.integers(0, 8, (20, 2)),
    codebooks=rng.normal(size=(2, 8, 2)),
    first_order=rng.normal(size=(2, 8)),
    name="f",
  )


def test_with_layer_reads_the_trained_weights_back():
  # What finetune/tables/ holds must embed like the trained layer, for every method.
  rng = np.random.default_rng(1)
  ids = np.array([0, 3, 19, 7, 25, -1])
  for plain in [*_artifacts(rng), _pq_table(rng)]:
    art = methods.as_artifact(plain)
    layer = art.to_layer(rngs=nnx.Rngs(0))
    params = nnx.state(layer, nnx.Param)
    trained = jax.tree.map(lambda x: x * 1.5 + 0.25, params)  # as if stage C had trained them
    nnx.update(layer, trained)
    back = art.with_layer(layer, source="test").to_layer(rngs=nnx.Rngs(1))
    np.testing.assert_allclose(np.asarray(back(ids)), np.asarray(layer(ids)), rtol=1e-6)
    np.testing.assert_allclose(
      np.asarray(back.first_order(ids)), np.asarray(layer.first_order(ids)), rtol=1e-6
    )
    trained_paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(params)}
    assert all(any(t in p for t in art.trainable_params) for p in trained_paths), art.method


def test_every_registered_method_declares_the_protocol():
  for name, method in methods.REGISTRY.items():
    assert method.name == name
    assert method.trainable_params and all(isinstance(p, str) for p in method.trainable_params)
    for member in ("nbytes", "first_order_nbytes", "knobs", "to_layer", "with_layer", "save"):
      assert callable(getattr(method.artifact, member)), (name, member)
    assert callable(method.artifact.load) and callable(method.build)


def test_bad_method_is_a_clear_error():
  config = smoke.get_config()
  config.compress.method = "bloom"
  with pytest.raises(ConfigError, match="compress.method='bloom'"):
    methods.validate(config)
  with pytest.raises(ConfigError, match="compress.method='bloom'"):
    methods.get("bloom")
