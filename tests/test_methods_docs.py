"""docs/methods.md stays true: its example method, registered here, runs through every stage."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np

from configs import smoke
from mec_jax import export, methods, pipeline

DOC = (Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text()


def _example(monkeypatch) -> dict:
  (block,) = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
  monkeypatch.setitem(methods.REGISTRY, "half", None)  # undone after the test
  module = types.ModuleType("docs_methods_example")  # a module, as the example would live in
  monkeypatch.setitem(sys.modules, module.__name__, module)
  exec(compile(block, "docs/methods.md", "exec", dont_inherit=True), module.__dict__)
  return module.__dict__


def test_the_documented_method_runs_every_stage(tmp_path, monkeypatch):
  example = _example(monkeypatch)
  assert methods.get("half") is example["METHOD"]
  config = smoke.get_config()
  config.compress.method = "half"
  config.train.epochs = 1
  report = pipeline.run(config, str(tmp_path))

  # Stage B wrote one artifact per compressed field; the report and memory asked it.
  fields = report["compressed_fields"]
  assert sorted(fields) == ["cat0", "cat1"]
  for name, field in fields.items():
    assert field == {"vocab_size": field["vocab_size"], "method": "half", "dtype": "float16"}
    assert (tmp_path / "quantize" / f"{name}.half.npz").exists()
    mem = report["memory"]["per_field"][name]
    assert mem["method"] == "half" and mem["compressed_bytes_packed"] == field["vocab_size"] * 8 * 2
    assert mem["ratio_packed"] == 2.0
  assert report["compressed"]["source"] in ("finetune", "swap")
  assert set(report["compressed_finetune"]) >= {"test_auc", "valid_auc"}

  # Stage C's tables were written through with_layer, and they are what the export serves.
  vocab = fields["cat0"]["vocab_size"]
  table = example["HalfTable"].load(str(tmp_path / "finetune" / "tables" / "cat0.npz"))
  assert table.rows.dtype == np.float16 and table.rows.shape == (vocab, 8)
  manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
  (key,) = [
    p["key"] for p in manifest["params"] if "half_rows" in p["path"] and p["shape"] == [vocab, 8]
  ]
  with np.load(tmp_path / "export" / "params.npz") as params:
    np.testing.assert_array_equal(params[key].astype(np.float16), table.rows)
  served = export.load(str(tmp_path / "export"))
  ids = np.zeros((3, served.num_fields), np.int32)
  assert np.isfinite(np.asarray(served(ids, np.ones((3, served.num_fields), np.float32)))).all()
