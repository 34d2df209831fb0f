"""The command line turns expected failures into ONE ``error:`` line on stderr and exit status 2
(a few cases in subprocesses; the library-level cases are in the other tests of this folder)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mec_jax.errors import one_line

REPO = Path(__file__).resolve().parents[1]


def _cli(*flags, cwd, env_drop=()):
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  for key in env_drop:
    env.pop(key, None)
  return subprocess.run(
    [sys.executable, "-m", "mec_jax.main", f"--config={REPO / 'configs' / 'smoke.py'}", *flags],
    capture_output=True,
    text=True,
    cwd=cwd,
    env=env,
    timeout=300,
  )


def _one_error_line(proc) -> str:
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  return lines[0]


def test_config_key_typo_names_the_flag_and_the_right_key(tmp_path):
  line = _one_error_line(
    _cli("--config.quantize.codebok_size=3", f"--workdir={tmp_path}", cwd=tmp_path)
  )
  assert line == (
    "error: --config.quantize.codebok_size: no config key 'codebok_size'. "
    'Did you mean "codebook_size" instead of "codebok_size"?'
  )


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  line = _one_error_line(_cli(f"--workdir={path}", cwd=tmp_path))
  assert line == f"error: --workdir={path} is a file; expected a directory"


def test_empty_split_before_training_and_no_tpu_probe(tmp_path):
  # Without JAX_PLATFORMS (as a user runs it): the "Unable to initialize backend 'tpu'" line is
  # gone, and the only line on stderr is the error, found before any training.
  proc = _cli(
    "--config.data.split_fractions=(0.9,0.1,0.0)",
    f"--workdir={tmp_path / 'run'}",
    cwd=tmp_path,
    env_drop=("JAX_PLATFORMS",),
  )
  line = _one_error_line(proc)
  assert line.startswith("error: data split 'test' of synthetic is empty")
  assert not (tmp_path / "run" / "pretrain").exists()


@pytest.mark.parametrize(
  "err, text",
  [
    (
      OSError(errno.ENOSPC, "No space left on device", "/w/x"),
      "/w/x: No space left on device [errno 28]",
    ),
    (KeyError("'a'\nDid you mean 'b'?"), "'a' Did you mean 'b'?"),
    (ValueError("two\nlines"), "two lines"),
  ],
)
def test_one_line(err, text):
  assert one_line(err) == text


def _cli_patched(patch: str, *flags, cwd):
  """`_cli` with ``patch`` (Python source) run first in the same process: a fault injected
  where a real one (a full disk, a bug) cannot be made on demand."""
  argv = ["mec_jax.main", f"--config={REPO / 'configs' / 'smoke.py'}", *flags]
  code = f"{patch}\nimport runpy, sys\nsys.argv = {argv!r}\n"
  code += "runpy.run_module('mec_jax.main', run_name='__main__', alter_sys=True)\n"
  return subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    cwd=cwd,
    env={**os.environ, "PYTHONPATH": str(REPO)},
    timeout=300,
  )


def test_a_bug_is_one_line_and_its_traceback_goes_to_the_log(tmp_path):
  patch = (
    "import threading\n"
    "from mec_jax import pipeline\n"
    "def run(config, workdir):\n"
    "  thread = threading.Thread(target=lambda: 1 / 0, name='background')\n"
    "  thread.start(); thread.join()\n"
    "  raise RuntimeError('a bug\\nin two lines')\n"
    "pipeline.run = run\n"
  )
  (tmp_path / "run").mkdir()
  proc = _cli_patched(patch, f"--workdir={tmp_path / 'run'}", cwd=tmp_path)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  logs = list((tmp_path / "run" / "logs").glob("error-*.log"))
  assert len(lines) == 1 and len(logs) == 1, proc.stderr[-2000:]
  assert lines[0] == (
    f"error: internal error RuntimeError: a bug in two lines (traceback in {logs[0]}; a bug)"
  )
  text = logs[0].read_text()
  assert "exception in thread background" in text and "ZeroDivisionError" in text
  assert "RuntimeError: a bug" in text and text.count("Traceback") == 2


def test_a_failed_checkpoint_write_is_one_line(tmp_path):
  # A real write failure inside TensorStore's threads (as on a full disk): a file-size limit
  # that the cache (built first, without it) stays under and a checkpoint goes over. Orbax's
  # threads used to print their tracebacks on the terminal; they go to the log.
  from configs import smoke
  from mec_jax.data import load_dataset

  load_dataset(smoke.get_config().data, str(tmp_path / "cache"))
  patch = (
    "import resource, signal\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (16000, 16000))\n"
  )
  workdir = tmp_path / "run"
  proc = _cli_patched(
    patch, f"--workdir={workdir}", f"--config.data.cache_dir={tmp_path / 'cache'}", cwd=tmp_path
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: {workdir / 'pretrain' / 'checkpoints'}: cannot save"), last
  assert "File too large [errno 27]" in last
  logs = list((workdir / "logs").glob("error-*.log"))
  assert len(logs) == 1 and last.endswith(f"(tracebacks in {logs[0]})")
  assert "Traceback" in logs[0].read_text()


def test_ctrl_c_is_one_line_and_exit_status_130(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(
    [sys.executable, "-m", "mec_jax.main", f"--config={REPO / 'configs' / 'smoke.py'}",
     f"--workdir={workdir}"],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    env={**os.environ, "PYTHONPATH": str(REPO)},
  )  # fmt: skip
  deadline = time.time() + 240
  while not (workdir / "pretrain").exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.2)  # stage A has started
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-2000:]
  assert "Traceback" not in stderr, stderr[-2000:]
  assert stderr.strip().splitlines()[-1] == "error: interrupted; rerun the same command to resume"


def test_a_truncated_checkpoint_file_is_one_line(finished_quick, tmp_path):
  # Used to end in "RuntimeError: Event loop is closed" under pages of tracebacks.
  _, workdir, _ = finished_quick
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  with open(copy / "pretrain" / "result.json") as fh:
    step = json.load(fh)["best_step"]
  data = copy / "pretrain" / "checkpoints" / str(step) / "state" / "ocdbt.process_0" / "d"
  biggest = max(data.iterdir(), key=lambda p: p.stat().st_size)
  os.truncate(biggest, biggest.stat().st_size // 2)
  proc = _cli(
    "--config.train.epochs=1", "--config.quantize.epochs=1", f"--workdir={copy}", cwd=tmp_path
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith(f"error: {copy / 'pretrain'}: the finished run's checkpoint (step {step})")
  assert "cannot be restored: damaged files" in line and f"delete {copy / 'pretrain'}" in line
