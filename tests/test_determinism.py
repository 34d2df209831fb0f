"""Same config and seed on CPU: bit-identical stage-A tables, codes, codebooks and metrics."""

import glob
import os

import numpy as np

from mec_jax import pipeline
from mec_jax.compression.table import CompressedTable
from tests.conftest import quick_config


def test_two_runs_with_one_seed_are_identical(finished_quick, tmp_path):
  _, first_dir, first = finished_quick
  second_dir = str(tmp_path / "again")
  second = pipeline.run(quick_config(), second_dir)
  for key in ("full", "compressed_swap", "compressed_finetune", "compressed", "memory"):
    assert second[key] == first[key], key  # exact floats, not approximately
  tables = sorted(glob.glob(os.path.join(first_dir, "quantize", "*.npz")))
  assert [os.path.basename(p) for p in tables] == ["cat0.npz", "cat1.npz"]
  for path in tables:
    a = CompressedTable.load(path)
    b = CompressedTable.load(os.path.join(second_dir, "quantize", os.path.basename(path)))
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.codebooks, b.codebooks)
    np.testing.assert_array_equal(a.first_order, b.first_order)
  for path in glob.glob(os.path.join(first_dir, "pretrain", "tables", "*.npz")):
    other = os.path.join(second_dir, "pretrain", "tables", os.path.basename(path))
    with np.load(path) as a, np.load(other) as b:
      np.testing.assert_array_equal(a["embedding"], b["embedding"])
