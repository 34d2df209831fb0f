"""Several processes (hosts) as one JAX runtime: start-up, the one writer, barriers.

A multi-process run starts every process with the same config and work directory (on a file
system all processes share, as Orbax's multi-process checkpoints need) and a distinct process id.
`initialize` must run before anything touches a device (``mec_jax.main`` calls it first). Then
``jax.devices()`` spans all processes, the train mesh covers them all, every process reads its own
slice of each batch (`mec_jax.data.loader.BatchLoader`), sparse tables are row-sharded across
processes, and only process 0 (`is_writer`) writes reports, tables and artifacts.
"""

from __future__ import annotations

import os

import jax
from absl import logging

from mec_jax.errors import ConfigError
from mec_jax.mesh import data_mesh


def initialize(
  coordinator_address: str = "",
  num_processes: int = 0,
  process_id: int = -1,
  *,
  auto_detect: bool = False,
) -> bool:
  """Joins a multi-process JAX runtime when the settings (or the environment) ask for one.

  Multi-process when ``num_processes > 1``, a coordinator address is given (here or in
  ``JAX_COORDINATOR_ADDRESS``), or ``auto_detect`` (SLURM / Open MPI / ... fill in the rest).
  Cross-process collectives on CPU use gloo.

  Args:
    coordinator_address: ``host:port`` of process 0 ("" = from the environment / cluster).
    num_processes: total processes (0 = from the environment / cluster).
    process_id: this process's index (-1 = from the environment / cluster).
    auto_detect: let JAX detect a cluster's settings.

  Returns:
    Whether this is a multi-process run (after initialization).

  Raises:
    ConfigError: a process id outside ``[0, num_processes)``.
  """
  coordinator = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  if not (num_processes > 1 or coordinator or auto_detect):
    return False
  if num_processes > 0 and not -1 <= process_id < num_processes:
    raise ConfigError(
      f"distributed.process_id={process_id}; expected 0..{num_processes - 1} "
      f"(distributed.num_processes={num_processes})"
    )
  if jax.distributed.is_initialized():
    return jax.process_count() > 1
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator or None,
    num_processes=num_processes if num_processes > 0 else None,
    process_id=process_id if process_id >= 0 else None,
  )
  logging.info(
    "distributed: process %d of %d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )
  return jax.process_count() > 1


def initialize_from_config(config) -> bool:
  """`initialize` with ``config.distributed`` (absent section: single process)."""
  if "distributed" not in config:
    return False
  d = config.distributed
  return initialize(d.coordinator_address, d.num_processes, d.process_id, auto_detect=d.auto_detect)


def is_writer() -> bool:
  """True on the process that writes files (process 0; the only one in a single-process run)."""
  return jax.process_index() == 0


def local_mesh():
  """A ``('data',)`` mesh over this process's devices in a multi-process run, else None.

  For work every process repeats on its own (stage B: each process quantizes the same tables
  from the same seed, so all hold the result without sending it around).
  """
  if jax.process_count() == 1:
    return None
  return data_mesh(jax.local_devices(), axis_type=jax.sharding.AxisType.Explicit)


def barrier(name: str) -> None:
  """Waits until every process reaches ``barrier(name)`` (no-op on one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
