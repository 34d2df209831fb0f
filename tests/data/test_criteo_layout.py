"""bench/criteo_layout.py writes a set that configs/criteo.py's reader loads as Criteo_x1."""

import importlib.util
from pathlib import Path

import numpy as np

from configs import criteo
from mec_jax.data import load_dataset

REPO = Path(__file__).resolve().parents[2]


def _criteo_layout():
  spec = importlib.util.spec_from_file_location(
    "criteo_layout", REPO / "bench" / "criteo_layout.py"
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_written_set_loads_through_the_criteo_x1_reader(tmp_path):
  layout = _criteo_layout()
  counts = layout.write(str(tmp_path / "data"), 400, seed=3)
  assert counts == {"train": 400, "valid": 50, "test": 50}
  again = layout.write(str(tmp_path / "again"), 400, seed=3)  # deterministic by seed
  assert again == counts
  for split in counts:
    first = (tmp_path / "data" / f"{split}.csv").read_text()
    assert first == (tmp_path / "again" / f"{split}.csv").read_text()
  config = criteo.get_config()
  config.data.dir = str(tmp_path / "data")
  config.data.min_count = 1
  dataset = load_dataset(config.data, str(tmp_path / "cache"))
  assert [dataset.num_rows(s) for s in ("train", "valid", "test")] == [400, 50, 50]
  names = [f.name for f in dataset.feature_map.fields]
  assert names == layout.NUMERIC + layout.CATEGORICAL
  labels = dataset.splits["train"]["label"]
  assert set(np.unique(labels)) == {0.0, 1.0}
  # The hashed fields keep their values apart: the largest Criteo field realizes many ids and the
  # 3-value one (C9) at most 3 (+ OOV/padding rows of the encoder).
  vocab = {f.name: f.vocab_size for f in dataset.feature_map.fields}
  assert vocab["C3"] > 200 and vocab["C9"] <= 5
