"""The command line turns expected failures into ONE ``error:`` line on stderr and exit status 2
(a few cases in subprocesses; the library-level cases are in the other tests of this folder)."""

import errno
import os
import subprocess
import sys
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
