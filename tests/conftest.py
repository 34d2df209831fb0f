"""One finished quick smoke run shared (read-only) by the workdir, numerics and determinism tests."""

import platform

import pytest

from configs import smoke
from mec_jax import pipeline


def quick_config():
  """configs/smoke.py with one epoch per stage."""
  config = smoke.get_config()
  config.train.epochs = 1
  config.quantize.epochs = 1
  return config


@pytest.fixture(scope="session")
def finished_quick(tmp_path_factory):
  """``(config, workdir, report)`` of a finished `quick_config` run; copy it before changing it."""
  workdir = str(tmp_path_factory.mktemp("quick"))
  config = quick_config()
  return config, workdir, pipeline.run(config, workdir)


def cpu_line() -> str:
  """The machine's SIMD level: numpy's float results differ in the last bits between AVX2 and AVX-512."""
  try:
    from numpy._core._multiarray_umath import __cpu_features__ as features
  except ImportError:  # numpy < 2
    return f"cpu: {platform.machine()}"
  simd = [name for name in ("AVX2", "AVX512F", "AVX512_SKX", "NEON", "ASIMD") if features.get(name)]
  return f"cpu: {platform.machine()} simd: {' '.join(simd) or 'baseline'}"


def pytest_terminal_summary(terminalreporter):
  """Names the SIMD level the suite ran on, even under ``-q`` (which hides the report header)."""
  terminalreporter.write_line(cpu_line())
