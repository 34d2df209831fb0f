"""Steps on 8 host CPU devices equal single-device ones (each check in a separate process)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run_with_8_devices(script: str) -> None:
  env = dict(os.environ)
  env["XLA_FLAGS"] = (
    env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  ).strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
  proc = subprocess.run(
    [sys.executable, str(Path(__file__).with_name(script))],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert proc.stdout.strip().endswith("OK")


def test_sharded_step_equals_single_device_step():
  _run_with_8_devices("data_parallel_check.py")


def test_row_sharded_sparse_tables_equal_single_device_and_are_never_gathered():
  _run_with_8_devices("sparse_parallel_check.py")


def test_sparse_run_killed_on_8_devices_resumes_on_2_to_the_1_device_result():
  _run_with_8_devices("sparse_resume_check.py")


def test_data_model_meshes_equal_one_device_shard_rows_on_model_and_resume_elsewhere():
  _run_with_8_devices("mesh_parallel_check.py")
