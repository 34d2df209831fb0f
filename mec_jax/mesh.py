"""The device meshes shared by training and stage B (DESIGN §8: imports nothing of mec_jax).

Rows of a batch (training) or of a table (stage B) split over the ``data`` axis; a second
``model`` axis (training with ``train.model_axis_size`` > 1) splits only the rows of the sparse
tables. One device is a mesh of size 1, so the single-device path is the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
MODEL_AXIS = "model"


def data_mesh(
  devices: int | Sequence | None = None, *, axis_type: AxisType = AxisType.Auto
) -> Mesh:
  """A 1-D ``('data',)`` mesh.

  Args:
    devices: a device list, or a count n (the first n devices); default all devices.
    axis_type: ``Auto`` (default: ``jit`` with ``in_shardings`` lets XLA place collectives) or
      ``Explicit`` (stage B's default, `jax.make_mesh`'s own).

  Raises:
    ValueError: a count outside ``[1, jax.device_count()]``.
  """
  if devices is None or isinstance(devices, int):
    available = jax.device_count()
    count = available if devices is None else devices
    if not 1 <= count <= available:
      raise ValueError(f"num_devices must be in [1, {available}], got {count}")
    devices = jax.devices()[:count]
  devices = list(devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(axis_type,), devices=devices)


def data_model_mesh(model_axis_size: int, devices: Sequence) -> Mesh:
  """A ``('data', 'model')`` mesh of shape (N/k, k), ``Auto`` axes; k must divide N."""
  devices = list(devices)
  if model_axis_size < 1 or len(devices) % model_axis_size:
    raise ValueError(
      f"model_axis_size={model_axis_size} must be >= 1 and divide the device count ({len(devices)})"
    )
  return jax.make_mesh(
    (len(devices) // model_axis_size, model_axis_size),
    (DATA_AXIS, MODEL_AXIS),
    axis_types=(AxisType.Auto,) * 2,
    devices=devices,
  )


def replicated(mesh: Mesh) -> NamedSharding:
  """The same full array on every device of ``mesh``."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis split over ``data``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Per-process host batch -> global arrays sharded on ``data`` (leading axis)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
