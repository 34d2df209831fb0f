"""Bench scripts answer ``--help`` with their usage and exit 0 (absl exited 1 there)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
  "script, option", [("stage_a_sweep.py", "--workdir"), ("synthetic_tail.py", "--cache_dir")]
)
def test_help_exits_zero_with_the_usage(script, option):
  out = subprocess.run(
    [sys.executable, str(REPO / "bench" / script), "--help"],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 0, out.stderr
  assert out.stdout.startswith("usage: ") and option in out.stdout
  assert "Traceback" not in out.stderr
