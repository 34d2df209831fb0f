"""Installed, not cloned: the configs ship in the package, ``--config=<built-in name>`` works from
any directory, and a missing, unknown or broken ``--config`` is one line naming what to use."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mec_jax import configs

REPO = Path(__file__).resolve().parents[1]


def _cli(*flags, cwd, python=sys.executable, pythonpath=str(REPO), timeout=300):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("PYTHONPATH", None)
  if pythonpath:
    env["PYTHONPATH"] = pythonpath
  return subprocess.run(
    [python, "-m", "mec_jax.main", *flags],
    capture_output=True,
    text=True,
    cwd=cwd,
    env=env,
    timeout=timeout,
  )


def _one_error_line(proc) -> str:
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  return lines[0]


def test_builtin_names_are_the_shipped_files_and_the_checkout_reexports_them():
  names = configs.builtin_names()
  shipped = sorted(p.stem for p in (REPO / "mec_jax" / "configs").glob("*.py") if p.stem[0] != "_")
  assert names == shipped and {"default", "smoke", "synthetic", "kuairand", "frappe"} <= set(names)
  for name in names:  # `from configs import <name>` in a checkout is the packaged config
    mine = importlib.import_module(f"configs.{name}").get_config
    assert mine is importlib.import_module(f"mec_jax.configs.{name}").get_config, name


@pytest.mark.parametrize(
  ("flags", "expected"),
  [
    ((), "error: --config is required: a built-in config ("),
    (("--config.data.name=x",), "error: --config is required: a built-in config ("),
    (("--config=kuairandd",), "error: --config=kuairandd: no such file and not a built-in config"),
  ],
  ids=["missing", "override_without_config", "unknown_name"],
)
def test_missing_or_unknown_config_is_one_line_naming_the_builtins(tmp_path, flags, expected):
  line = _one_error_line(_cli(*flags, f"--workdir={tmp_path / 'run'}", cwd=tmp_path))
  assert line.startswith(expected), line
  assert ", ".join(configs.builtin_names()) in line
  assert not (tmp_path / "run").exists()


def test_config_file_with_a_syntax_error_names_file_and_line(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text("from mec_jax.configs import default\n\n\ndef get_config(:\n  pass\n")
  line = _one_error_line(_cli(f"--config={path}", f"--workdir={tmp_path / 'run'}", cwd=tmp_path))
  assert line.startswith(f"error: --config: {path}, line 4: "), line


def test_config_file_whose_import_fails_says_how_to_import_the_builtins(tmp_path):
  # e.g. a config written for a checkout (`from configs import default`) run outside it
  path = tmp_path / "mine.py"
  path.write_text("from my_configs import default\n\nget_config = default.get_config\n")
  line = _one_error_line(_cli(f"--config={path}", f"--workdir={tmp_path / 'run'}", cwd=tmp_path))
  assert "No module named 'my_configs'" in line and "from mec_jax.configs import default" in line


def _build_wheel(out: Path) -> Path:
  """``pip wheel --no-deps`` of this checkout into ``out``; skips when it cannot be built (e.g.
  offline without the build backend)."""
  for isolation in ([], ["--no-build-isolation"]):
    proc = subprocess.run(
      [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        *isolation,
        "-w",
        str(out),
        str(REPO),
      ],
      capture_output=True,
      text=True,
      timeout=240,
    )
    wheels = sorted(out.glob("mec_jax-*.whl"))
    if proc.returncode == 0 and wheels:
      return wheels[0]
  pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1:]}")


def test_wheel_installs_and_runs_a_builtin_config_from_another_directory(tmp_path):
  wheel = _build_wheel(tmp_path / "dist")
  venv = tmp_path / "venv"
  # --system-site-packages supplies the dependencies; it also holds the editable install of the
  # checkout, so the test proves the wheel's copy is the one imported.
  subprocess.run(
    [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True
  )
  python = str(venv / "bin" / "python")
  bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  # --ignore-installed: the editable install seen through the system site-packages has the same
  # version, and pip would otherwise keep it; nothing outside the venv is touched.
  install = ["install", "-q", "--no-deps", "--ignore-installed", str(wheel)]
  subprocess.run(
    [sys.executable, "-m", "pip", "--python", python, *install],
    check=True,
    capture_output=True,
    env=bare,
    timeout=240,
  )
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  where = subprocess.run(
    [python, "-c", "import mec_jax.configs as c; print(c.__file__)"],
    capture_output=True,
    text=True,
    cwd=elsewhere,
    env=bare,
    check=True,
  ).stdout.strip()
  assert Path(where).is_relative_to(venv), where

  line = _one_error_line(_cli(cwd=elsewhere, python=python, pythonpath=""))
  assert "smoke" in line and "kuairand" in line

  workdir = tmp_path / "run"
  proc = _cli(
    "--config=smoke",
    "--config.stage=pretrain",  # one stage keeps the test short; the config loads in full
    "--config.train.epochs=1",
    f"--workdir={workdir}",
    cwd=elsewhere,
    python=python,
    pythonpath="",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "dataset synthetic" in proc.stdout and "full:       test AUC" in proc.stdout
  assert (workdir / "report.json").exists() and list((workdir / "pretrain").iterdir())


def test_every_builtin_config_name_the_docs_use_exists():
  pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
  used = {name for page in pages for name in re.findall(r"--config=(\w+)\s", page.read_text())}
  assert {"synthetic", "frappe"} <= used <= set(configs.builtin_names()), used
