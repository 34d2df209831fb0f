"""Stage B's use of the 1-D ``('data',)`` mesh (`mec_jax.mesh`): row sharding helpers.

k-means and the quantizer's train step split *rows* over devices and keep everything else
(centroids, codebooks, parameters) replicated. One device is just a mesh of size 1, so the
single-device path is the same code.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mec_jax.mesh import DATA_AXIS, data_mesh


def check_mesh(mesh: Mesh | None) -> Mesh:
  """Returns ``mesh`` (or the all-device data mesh) after checking it has a ``'data'`` axis only."""
  if mesh is None:
    return data_mesh(axis_type=AxisType.Explicit)
  if tuple(mesh.axis_names) != (DATA_AXIS,):
    raise ValueError(f"mesh must be 1-D with axis names ({DATA_AXIS!r},), got {mesh.axis_names}")
  return mesh


def _constrain(x: jax.Array, mesh: Mesh, spec: P) -> jax.Array:
  # Explicit-axis meshes (jax.make_mesh's default) need `reshard`; Auto-axis meshes only accept
  # a sharding constraint. Both are no-ops when the array already has that sharding.
  if all(t == AxisType.Explicit for t in mesh.axis_types):
    return jax.sharding.reshard(x, NamedSharding(mesh, spec))
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def shard_rows(x: jax.Array, mesh: Mesh) -> jax.Array:
  """Inside ``jit``: split the leading (row) axis over ``'data'``."""
  return _constrain(x, mesh, P(DATA_AXIS))


def replicate(x: jax.Array, mesh: Mesh) -> jax.Array:
  """Inside ``jit``: the same full array on every device."""
  return _constrain(x, mesh, P())


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def auto_mesh(mesh: Mesh) -> Mesh:
  """The same devices and axis with ``Auto`` axis types, for ``jit``-sharded (GSPMD) steps.

  ``jit`` with ``in_shardings`` on an Auto mesh lets XLA place the gradient all-reduce itself,
  whatever axis types the caller's mesh was made with.
  """
  return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
