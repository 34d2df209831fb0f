"""Fixtures shared by the data-layer tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO / ".." / "shared" / "data"
if str(REPO) not in sys.path:  # `configs` is a top-level folder, importable from the repo root
  sys.path.insert(0, str(REPO))

from configs import default  # noqa: E402


@pytest.fixture
def data_config():
  """A fresh ``config.data`` with the defaults of configs/default.py."""
  return default.get_config().data


@pytest.fixture
def shared_data():
  """``<repo>/../shared/data``; tests using it skip when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"{SHARED_DATA} not present")
  return SHARED_DATA
