"""bench/ablation.py's cells and table (no training: cell records written by hand)."""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mec_jax.experiments import runner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ablation():
  sys.path.insert(0, str(REPO / "bench"))
  try:
    spec = importlib.util.spec_from_file_location("bench_ablation", REPO / "bench" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(str(REPO / "bench"))
  return module


def test_a_variant_is_a_sweep_cell(ablation):
  cell = ablation.variant_cell("m4k64", "mec@block:selection=error:finetune.learning_rate=0.01")
  assert cell == {
    "compress.method": "pq",
    "quantize.num_subspaces": 4,
    "quantize.codebook_size": 64,
    "quantize.variant": "mec",
    "finetune.init_from_pretrain": False,
    "quantize.encoder": "block",
    "quantize.selection": "error",
    "finetune.learning_rate": 0.01,
  }
  assert ablation.variant_cell("m2k256", "kmeans") in ablation.ablation.SWEEP


def _report(swap, cold, full, entropy):
  return {
    "full": {"test_auc": full},
    "compressed_swap": {"test_auc": swap},
    "compressed_finetune": None if cold is None else {"test_auc": cold},
    "compressed_fields": {"cat0": {"code_usage_entropy": entropy, "best_epoch": 3}},
  }


def test_table_pairs_each_seed_with_its_reference(ablation, tmp_path):
  rng = np.random.default_rng(0)
  seeds, full = [7, 8, 9], rng.uniform(0.7, 0.8, 3)
  aucs = {v: full - rng.uniform(0, 0.01, 3) for v in ("mec", "kmeans")}
  cold = full - 0.02
  for variant, values in aucs.items():
    overrides = ablation.variant_cell("m4k64", variant)
    for i, seed in enumerate(seeds):
      path = tmp_path / "synthetic" / "cells" / runner.cell_name(overrides) / f"seed{seed}"
      path.mkdir(parents=True)
      report = _report(values[i], cold[i] if variant == "mec" else None, full[i], 0.5 + i / 10)
      record = {"cell": runner.cell_name(overrides), "seed": seed, "overrides": overrides}
      (path / "cell.json").write_text(json.dumps(record | {"report": report}))
  args = argparse.Namespace(
    out=str(tmp_path), datasets="synthetic", settings="m4k64", variants="mec,kmeans",
    paired_to="kmeans,mec",
  )  # fmt: skip
  rows = {
    line.split(" | ")[2]: line.split(" | ")
    for line in ablation.results_markdown(args).split("\n")[2:]
  }
  assert set(rows) == {"mec", "kmeans"}
  mec = rows["mec"]
  diff = aucs["mec"] - aucs["kmeans"]
  assert mec[3] == "3"
  assert mec[4] == f"{np.mean(aucs['mec']):.4f} ± {np.std(aucs['mec']):.4f}"
  assert mec[5] == f"{np.mean(diff):+.4f} ± {np.std(diff):.4f} (3)"
  assert mec[6] == "—"  # mec against itself
  assert mec[7] == f"{np.mean(cold):.4f} ± {np.std(cold):.4f}"
  stage_c_minus_swap = cold - aucs["mec"]
  assert mec[9] == f"{np.mean(stage_c_minus_swap):+.4f} ± {np.std(stage_c_minus_swap):.4f} (3)"
  assert mec[10] == f"{np.mean(full):.4f} ± {np.std(full):.4f}"
  assert mec[11] == "cat0 0.600"
  assert rows["kmeans"][7] == "—"  # no stage C
