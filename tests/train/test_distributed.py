"""A 2-process `jax.distributed` run on localhost (CPU collectives) equals a 1-process run."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("distributed_check.py")


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


def _launch(workdir, out, num_processes, port):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
  env.pop("XLA_FLAGS", None)  # one CPU device per process
  return [
    subprocess.Popen(
      [sys.executable, str(SCRIPT), str(workdir), str(out), str(i), str(num_processes), str(port)],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(num_processes)
  ]


def _wait(procs, timeout=480):
  outputs = []
  try:
    for proc in procs:
      outputs.append(proc.communicate(timeout=timeout)[0])
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  for proc, text in zip(procs, outputs, strict=True):
    assert proc.returncode == 0 and text.strip().endswith("OK"), text[-4000:]


def test_two_process_run_equals_one_process_run(tmp_path):
  one, two = tmp_path / "one.npz", tmp_path / "two.npz"
  port = _free_port()
  procs = _launch(tmp_path / "run1", one, 1, port) + _launch(tmp_path / "run2", two, 2, port)
  _wait(procs)
  single, multi = np.load(one), np.load(two)
  assert int(multi["steps"]) == int(single["steps"]) == 2 * (512 // 64)
  np.testing.assert_allclose(multi["test_auc"], single["test_auc"], rtol=1e-6)
  for key in ("table_0", "table_1"):
    np.testing.assert_allclose(multi[key], single[key], rtol=1e-4, atol=1e-6)
  events = [json.loads(line)["event"] for line in open(tmp_path / "run2/pretrain/metrics.jsonl")]
  assert events.count("valid") == 2 and events.count("test") == 1  # process 0 writes alone
