"""One finished quick smoke run shared (read-only) by the workdir, numerics and determinism tests."""

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
