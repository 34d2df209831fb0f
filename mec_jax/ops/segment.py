"""Segment sums, unique ids and row gathers whose gradients need no contended atomic adds.

The gradient of an embedding lookup ``table[ids]`` is a segment sum of the output cotangent over
the ids: autodiff writes it as a scatter-add with repeated indices. On GPU, jaxlib 0.10.2-0.11.0
compile a float32 scatter-add into a compare-and-swap retry loop that is 450-2000x slower when
many indices collide (jax #38806, openxla/xla #46225) -- and Zipf-popular ids always collide.

`segment_sum_sorted` needs no atomics: the ids are sorted once (with the permutation), a
*segmented* inclusive scan (`lax.associative_scan` over ``(value, segment-start flag)``) sums each
run of equal ids, and the last element of each run is written to its row by a scatter with
``unique_indices=True`` (every other position gets its own out-of-range index and is dropped).
A plain global cumsum with differences at the boundaries would be simpler but loses float32
precision to cancellation over long batches (`bench/grad_path.py` measures it).

`segment_sum` picks per backend with `jax.lax.platform_dependent` (only the chosen branch is
lowered, so a CUDA lowering done on a CPU host shows the GPU program): today's scatter-add on CPU,
where it is a sequential loop without atomics and 10-400x faster than sorting
(`bench/grad_path.py`), and on TPU, which has no such fault and where the sorted form is
unmeasured; the sorted form on GPUs (CUDA, ROCm). `take_rows` is ``jnp.take(table, ids, axis=0)`` whose gradient is
`segment_sum`; `unique_with_inverse` replaces ``jnp.unique(..., return_inverse=True)``, whose
inverse is built by an integer scatter-add.

Each function has a plain reference here (`segment_sum_reference`) that tests compare against.
This module imports nothing else of mec_jax.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

METHODS = ("auto", "sorted", "scatter")


def segment_sum_reference(data: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
  """``out[k] = sum of data[i] where segment_ids[i] == k``: today's scatter-add (the reference).

  Args:
    data: ``[n, ...]``.
    segment_ids: int ``[n]``; ids outside ``[0, num_segments)`` are dropped.
    num_segments: rows of the output.

  Returns:
    ``[num_segments, ...]`` in ``data``'s dtype.
  """
  return jax.ops.segment_sum(data, segment_ids, num_segments)


def sort_ids(ids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(sorted ids [n], permutation [n])`` with ``sorted == ids[permutation]`` (one stable sort)."""
  ids = jnp.asarray(ids).reshape(-1)
  order = lax.iota(jnp.int32, ids.shape[0])
  return lax.sort((ids, order), num_keys=1, is_stable=True)


def _run_edges(sorted_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Boolean ``(starts, ends) [n]`` of the runs of equal values in ``sorted_ids [n]``."""
  change = sorted_ids[1:] != sorted_ids[:-1]
  edge = jnp.ones((1,), bool)
  return jnp.concatenate([edge, change]), jnp.concatenate([change, edge])


def _segmented_add(left, right):
  """Associative operator of a segmented sum: a run restarts where ``right``'s flag is set."""
  left_sum, left_start = left
  right_sum, right_start = right
  flag = right_start.reshape(right_start.shape + (1,) * (right_sum.ndim - right_start.ndim))
  return jnp.where(flag, right_sum, left_sum + right_sum), left_start | right_start


def _accumulator(dtype) -> jnp.dtype:
  """Sums of low-precision floats (bf16, f16) run in float32 and are cast back at the end."""
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
    return jnp.dtype(jnp.float32)
  return dtype


def segment_sum_sorted(data: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
  """`segment_sum_reference` without contended scatter-adds (sort, segmented scan, unique scatter).

  Cost: one sort of ``n`` ids, one gather of ``data`` rows, a scan of ``2 log2 n`` passes over
  ``[n, ...]`` and one scatter of unique rows into ``[num_segments, ...]`` zeros.

  Args:
    data: ``[n, ...]``.
    segment_ids: int ``[n]``; ids outside ``[0, num_segments)`` are dropped.
    num_segments: rows of the output (``num_segments + n`` must fit in int32).

  Returns:
    ``[num_segments, ...]`` in ``data``'s dtype.
  """
  data = jnp.asarray(data)
  segment_ids = jnp.asarray(segment_ids, jnp.int32).reshape(-1)
  n = segment_ids.shape[0]
  out = jnp.zeros((num_segments, *data.shape[1:]), _accumulator(data.dtype))
  if n == 0:
    return out.astype(data.dtype)
  sorted_ids, order = sort_ids(segment_ids)
  values = jnp.take(data, order, axis=0).astype(out.dtype)
  starts, ends = _run_edges(sorted_ids)
  sums, _ = lax.associative_scan(_segmented_add, (values, starts))
  keep = ends & (sorted_ids >= 0) & (sorted_ids < num_segments)
  # Every dropped position gets its own out-of-range row, so the indices are truly unique.
  target = jnp.where(keep, sorted_ids, num_segments + lax.iota(jnp.int32, n))
  out = out.at[target].set(sums, mode="drop", unique_indices=True)
  return out.astype(data.dtype)


def segment_sum(
  data: jax.Array, segment_ids: jax.Array, num_segments: int, *, method: str = "auto"
) -> jax.Array:
  """Segment sum by the fastest contention-free form of the backend the program is lowered for.

  Args:
    data: ``[n, ...]``.
    segment_ids: int ``[n]``; ids outside ``[0, num_segments)`` are dropped.
    num_segments: rows of the output.
    method: ``"auto"`` (scatter-add on CPU and TPU, `segment_sum_sorted` on GPUs), ``"sorted"``
      or ``"scatter"`` (today's scatter-add everywhere).

  Returns:
    ``[num_segments, ...]`` in ``data``'s dtype.
  """
  if method not in METHODS:
    raise ValueError(f"segment_sum: method {method!r} is not one of {METHODS}")
  segment_ids = jnp.asarray(segment_ids).reshape(-1)
  if method == "scatter":
    return segment_sum_reference(data, segment_ids, num_segments)
  if method == "sorted":
    return segment_sum_sorted(data, segment_ids, num_segments)
  scatter = functools.partial(segment_sum_reference, num_segments=num_segments)
  return lax.platform_dependent(
    data,
    segment_ids,
    cpu=scatter,
    tpu=scatter,
    default=functools.partial(segment_sum_sorted, num_segments=num_segments),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _take_rows(table: jax.Array, ids: jax.Array, method: str) -> jax.Array:
  return jnp.take(table, ids, axis=0)


def _take_rows_fwd(table, ids, method):
  # An empty [rows, 0] array carries the table's row count and dtype to the backward pass.
  return jnp.take(table, ids, axis=0), (ids, jnp.zeros((table.shape[0], 0), table.dtype))


def _take_rows_bwd(method, residuals, cotangent):
  ids, like = residuals
  flat = cotangent.reshape(ids.size, *cotangent.shape[ids.ndim :])
  grad = segment_sum(flat, ids.reshape(-1), like.shape[0], method=method)
  return grad.astype(like.dtype), None


_take_rows.defvjp(_take_rows_fwd, _take_rows_bwd)


def take_rows(table: jax.Array, ids: jax.Array, *, method: str = "auto") -> jax.Array:
  """``jnp.take(table, ids, axis=0)`` whose gradient w.r.t. ``table`` is `segment_sum`.

  Args:
    table: ``[rows, ...]`` (any float dtype).
    ids: int ``[...]`` in ``[0, rows)``; as in ``jnp.take``, ids in ``[-rows, 0)`` count from
      the end and others read NaN rows (and get no gradient).
    method: how the backward pass sums rows (`segment_sum`).

  Returns:
    ``[..., *table.shape[1:]]``.
  """
  if method not in METHODS:
    raise ValueError(f"take_rows: method {method!r} is not one of {METHODS}")
  ids = jnp.asarray(ids, jnp.int32)
  ids = jnp.where(ids < 0, ids + table.shape[0], ids)  # jnp.take's negative indexing
  return _take_rows(table, ids, method)


def unique_with_inverse(ids: jax.Array, fill_value: int) -> tuple[jax.Array, jax.Array]:
  """``jnp.unique(ids, size=n, fill_value=fill_value, return_inverse=True)`` without scatter-adds.

  Args:
    ids: int ``[n]``.
    fill_value: value of the padding after the distinct ids.

  Returns:
    ``(uniq [n], inverse [n])``: the distinct ids ascending then ``fill_value``, and each id's
    index into ``uniq`` (int32).
  """
  ids = jnp.asarray(ids).reshape(-1)
  n = ids.shape[0]
  sorted_ids, order = sort_ids(ids)
  starts, _ = _run_edges(sorted_ids)
  rank = jnp.cumsum(starts.astype(jnp.int32)) - 1
  positions = lax.iota(jnp.int32, n)
  target = jnp.where(starts, rank, n + positions)
  uniq = jnp.full((n,), fill_value, ids.dtype)
  uniq = uniq.at[target].set(sorted_ids, mode="drop", unique_indices=True, indices_are_sorted=False)
  inverse = jnp.zeros((n,), jnp.int32).at[order].set(rank, unique_indices=True)
  return uniq, inverse
