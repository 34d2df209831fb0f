"""Each method declares the ``compress.*`` keys its stage B reads (`Method.config_keys`, what
the work directory's stage records bind): stage B of every registered method, run with a config
that records which ``compress`` keys the library reads, reads no undeclared key."""

from __future__ import annotations

import os
import sys

import ml_collections
import numpy as np
import pytest

from configs import smoke
from mec_jax import artifacts
from mec_jax.data.schema import FeatureMap, FieldSpec
from mec_jax.methods import base, registry

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(artifacts.__file__)))


@pytest.fixture
def compress_reads(monkeypatch):
  """The names under ``compress`` that code in mec_jax reads from any copy of the config."""
  read = set()
  real = ml_collections.ConfigDict.__getitem__

  def getitem(self, key):
    if isinstance(key, str) and {"method", "target_ratio", "init_tables"} <= set(self._fields):
      frame = sys._getframe(1)
      while frame is not None and "ml_collections" in frame.f_code.co_filename:
        frame = frame.f_back  # attribute access and copies go through ml_collections itself
      if frame is not None and frame.f_code.co_filename.startswith(PACKAGE):
        read.add(key)
    return real(self, key)

  monkeypatch.setattr(ml_collections.ConfigDict, "__getitem__", getitem)
  return read


def _stage_a(tmp_path, vocab=300, dim=8):
  rng = np.random.default_rng(0)
  counts = np.sort(rng.zipf(1.3, vocab).clip(1, 10_000))[::-1].copy()
  spec = FieldSpec("f", "categorical", vocab, vocab - 1, counts)
  path = str(tmp_path / "f.npz")
  table = rng.normal(size=(vocab, dim)).astype(np.float32)
  artifacts.save_stage_a_table(path, "f", table, rng.normal(size=vocab), counts)
  return FeatureMap("toy", [spec]), path


def test_every_method_declares_keys_that_exist():
  keys = set(smoke.get_config().compress.keys())
  for name, method in registry.REGISTRY.items():
    assert method.config_keys is not None, name
    assert set(method.config_keys) <= keys - {"method"}, name


@pytest.mark.parametrize("init_tables", ["stage_a", "random"])
@pytest.mark.parametrize("name", registry.names())
def test_stage_b_reads_only_the_declared_keys(name, init_tables, tmp_path, compress_reads):
  feature_map, path = _stage_a(tmp_path)
  config = smoke.get_config()
  config.quantize.variant = "kmeans"  # no quantizer training: the keys, not the fit, matter
  config.quantize.min_vocab = 100
  config.compress.method = name
  config.compress.target_ratio = 5.0
  config.compress.init_tables = init_tables
  config.compress.head_fraction = (0.25,)
  ctx = base.StageB(table_path=lambda field: path, quantize_dir=str(tmp_path / "q"))
  arts = registry.get(name).build(config, feature_map, ctx)
  assert set(arts) == {"f"}
  assert compress_reads, "the recorder saw no read"  # it works: every method reads something
  assert compress_reads <= {"method", *registry.get(name).config_keys}
