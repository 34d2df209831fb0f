"""Budgets of every method, artifact files, and the method dispatch of the pipeline on smoke data."""

import math

import numpy as np
import pytest

from configs import smoke
from mec_jax import methods
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
  for art in _artifacts(np.random.default_rng(0)):
    path = str(tmp_path / f"f.{art.method}.npz")
    methods.save_artifact(path, art)
    back = methods.load_artifact(path, art.method)
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
    methods.load_artifact(str(tmp_path / "f.hash.npz"), "qr")


def test_bad_method_is_a_clear_error():
  config = smoke.get_config()
  config.compress.method = "bloom"
  with pytest.raises(ConfigError, match="compress.method='bloom'"):
    methods.validate(config)
