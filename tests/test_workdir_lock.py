"""One run at a time per work directory: a second run stops at once naming the other process."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mec_jax import pipeline, workdir_lock
from mec_jax.errors import BusyError, DataError
from tests.conftest import quick_config

REPO = Path(__file__).resolve().parents[1]


def test_a_second_run_on_a_busy_workdir_is_refused_by_name(tmp_path, monkeypatch):
  monkeypatch.setattr(pipeline, "load_dataset", lambda *a: pytest.fail("the second run loaded"))
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(BusyError) as err:
      pipeline.run(quick_config(), str(tmp_path))
  text = str(err.value)
  assert text.startswith(f"--workdir={tmp_path} is in use by another run (pid {os.getpid()} on ")
  assert "pytest" in text or "python" in text  # the holder's command
  with workdir_lock.hold(str(tmp_path)):  # released when the holder's block ended
    pass


def test_the_lock_is_released_when_a_run_fails(tmp_path):
  bad = quick_config()
  bad.data.split_fractions = (0.9, 0.1, 0.0)
  with pytest.raises(DataError, match="is empty"):
    pipeline.run(bad, str(tmp_path))
  assert (tmp_path / ".lock").exists()  # the file stays; the kernel lock went with the run
  with workdir_lock.hold(str(tmp_path)):
    pass


def test_the_command_line_refuses_a_busy_workdir_in_one_line(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  with workdir_lock.hold(str(workdir)):  # another run, as far as the subprocess can tell
    proc = subprocess.run(
      [
        sys.executable, "-m", "mec_jax.main", f"--config={REPO / 'configs' / 'smoke.py'}",
        f"--workdir={workdir}",
      ],
      capture_output=True, text=True, cwd=tmp_path, timeout=300,
      env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr[-2000:]
  assert lines[0].startswith(
    f"error: --workdir={workdir} is in use by another run (pid {os.getpid()}"
  )
  assert not (workdir / "pretrain").exists()


def test_report_needs_no_lock(finished_quick, tmp_path, monkeypatch):
  config, workdir, report = finished_quick
  monkeypatch.setattr(pipeline.loop, "fit", lambda *a, **k: pytest.fail("report read a checkpoint"))
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  config = config.copy_and_resolve_references()
  config.stage = "report"
  with workdir_lock.hold(str(copy)):  # a run is busy there: the report still reads
    again = pipeline.run(config, str(copy))
  assert again["compressed"] == report["compressed"]
