"""bench/gpu.sh --cpu runs every section of bench/gpu_check.py; its CUDA lowering counter."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

REPO = Path(__file__).resolve().parents[1]


def _gpu_check():
  spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _cuda_text(fn, *args) -> str:
  return jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()


def test_count_contended_counts_only_non_unique_add_scatters():
  count = _gpu_check().count_contended
  table, ids, rows = jnp.zeros((6, 3)), jnp.array([1, 1, 4]), jnp.ones((3, 3))
  assert count(_cuda_text(lambda t, i, r: t.at[i].add(r), table, ids, rows)) == 1
  assert count(_cuda_text(lambda t, i, r: t.at[i].set(r), table, ids, rows)) == 0
  unique = lambda t, i, r: t.at[i].add(r, unique_indices=True)
  assert count(_cuda_text(unique, table, ids, rows)) == 0
  sorted_sum = lambda r, i: jax.ops.segment_sum(r, i, 6, indices_are_sorted=True)
  assert count(_cuda_text(sorted_sum, rows, ids)) == 1  # sorted, yet still contended
  both = lambda t, i, r: (t.at[i].add(r), t.at[i].add(2 * r), t.at[i].max(r))
  assert count(_cuda_text(both, table, ids, rows)) == 2
  assert count(_cuda_text(lambda t: jnp.take(t, jnp.array([0, 2]), axis=0), table)) == 0


def test_gpu_sh_cpu_runs_every_section():
  gpu_check = _gpu_check()
  env = dict(os.environ, PYTHONPATH=str(REPO), PYTHON=sys.executable)
  proc = subprocess.run(
    ["bash", str(REPO / "bench" / "gpu.sh"), "--cpu"],
    capture_output=True, text=True, env=env, timeout=1200,
  )  # fmt: skip
  out = proc.stdout
  assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
  for name in gpu_check.SECTIONS:
    assert re.search(rf"^== {name} ok in ", out, re.MULTILINE), (name, out[-3000:])
  lines = re.findall(r"^cuda lowering: contended scatter-adds dense=(\d+) sparse=(\d+)$", out, re.M)
  assert lines == [("0", "0")], out  # mec_jax.ops: no contended scatter-adds left
  assert f"{len(gpu_check.SECTIONS)}/{len(gpu_check.SECTIONS)} sections ok" in out
