"""Row-wise optimizers for row-sparse embedding tables (pure, jit-safe).

A sparse table is a dict of arrays sharing their row axis, e.g. ``{"embedding": [V, d],
"bias": [V]}``. A step sees only the rows its batch touches: ``uniq [U]`` (sorted unique ids; ids
``>= V`` are padding and are dropped) and the row gradients ``[U, ...]`` (the segment sums of the
per-example gradients). Only those rows of the tables and of the optimizer state are read and
written, so a step costs O(U·d) whatever V is.

* ``sgd``: ``row -= lr * g``.
* ``rowwise_adagrad``: FBGEMM's ``exact_rowwise_adagrad``: one accumulator per row (per array),
  ``acc += mean_d(g²)``, ``row -= lr * g / (sqrt(acc) + eps)``. State: ``[V]`` floats per array.
* ``lazy_adam``: Adam moments of the touched rows only, bias-corrected with each row's own step
  count (a row seen ``c`` times uses ``1 - β^c``). State: two ``[V, ...]`` moments per array and
  one int32 count ``[V]``.

With ``weight_decay > 0`` every optimizer also applies decoupled decay ``row -= lr * wd * row`` to
the touched rows (untouched rows are not decayed: the lazy convention).

References:
  FBGEMM ``split_table_batched_embeddings_ops`` (``EmbOptimType.EXACT_ROWWISE_ADAGRAD``);
  TensorFlow Addons ``LazyAdam``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SPARSE_OPTIMIZERS = ("rowwise_adagrad", "lazy_adam", "sgd")
# The default: within 0.0004 test AUC of dense Adam on configs/synthetic.py at the same rate, and
# its state is [V] floats, where lazy Adam adds two [V, d] moments (bench/RESULTS.md).
DEFAULT_SPARSE_OPTIMIZER = "rowwise_adagrad"
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults, as the dense layers use
ADAGRAD_EPS = 1e-8  # FBGEMM's default


def init_row_state(optimizer: str, arrays: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Zero optimizer state for one sparse table.

  Args:
    optimizer: one of `SPARSE_OPTIMIZERS`.
    arrays: ``{name: [V, ...]}`` arrays sharing the row axis.

  Returns:
    ``{}`` (sgd); ``{name + "_acc": [V]}`` (rowwise_adagrad); ``{name + "_mu", name + "_nu":
    like arrays, "count": int32 [V]}`` (lazy_adam).
  """
  rows = next(iter(arrays.values())).shape[0]
  if optimizer == "sgd":
    return {}
  if optimizer == "rowwise_adagrad":
    return {f"{name}_acc": jnp.zeros((rows,), jnp.float32) for name in arrays}
  if optimizer == "lazy_adam":
    state = {"count": jnp.zeros((rows,), jnp.int32)}
    for name, array in arrays.items():
      state[f"{name}_mu"] = jnp.zeros_like(array)
      state[f"{name}_nu"] = jnp.zeros_like(array)
    return state
  raise ValueError(f"train.sparse_optimizer={optimizer!r}; expected one of {SPARSE_OPTIMIZERS}")


def _rows(array: jax.Array, uniq: jax.Array) -> jax.Array:
  return jnp.take(array, uniq, axis=0, mode="clip")


def _put(array: jax.Array, uniq: jax.Array, rows: jax.Array) -> jax.Array:
  # Padding ids (>= V) fall outside the table and are dropped; on donated buffers XLA updates
  # the rows in place.
  return array.at[uniq].set(rows.astype(array.dtype), mode="drop")


def update_rows(
  optimizer: str,
  arrays: dict[str, jax.Array],
  state: dict[str, jax.Array],
  uniq: jax.Array,
  grads: dict[str, jax.Array],
  learning_rate: jax.Array | float,
  *,
  weight_decay: float = 0.0,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """One optimizer step on the touched rows of one sparse table.

  Args:
    optimizer: one of `SPARSE_OPTIMIZERS`.
    arrays: ``{name: [V, ...]}`` table arrays.
    state: that table's state from `init_row_state`.
    uniq: int ``[U]`` touched row ids, each real id once; ids ``>= V`` are padding.
    grads: ``{name: [U, ...]}`` gradients of the gathered rows ``arrays[name][uniq]``.
    learning_rate: scalar step size (may be traced, e.g. base rate × plateau scale).
    weight_decay: decoupled decay of the touched rows.

  Returns:
    ``(arrays, state)`` with only the rows in ``uniq`` changed.
  """
  new_arrays, new_state = dict(arrays), dict(state)
  if optimizer == "lazy_adam":
    count = _rows(state["count"], uniq) + 1
    new_state["count"] = _put(state["count"], uniq, count)
    steps = count.astype(jnp.float32)
    correction1 = 1 - ADAM_B1**steps
    correction2 = 1 - ADAM_B2**steps
  for name, array in arrays.items():
    rows, grad = _rows(array, uniq), grads[name]
    if optimizer == "sgd":
      delta = grad
    elif optimizer == "rowwise_adagrad":
      square = jnp.square(grad)
      mean_square = jnp.mean(square.reshape(square.shape[0], -1), axis=1)
      acc = _rows(state[f"{name}_acc"], uniq) + mean_square
      new_state[f"{name}_acc"] = _put(state[f"{name}_acc"], uniq, acc)
      delta = grad / _expand(jnp.sqrt(acc) + ADAGRAD_EPS, grad)
    elif optimizer == "lazy_adam":
      mu = ADAM_B1 * _rows(state[f"{name}_mu"], uniq) + (1 - ADAM_B1) * grad
      nu = ADAM_B2 * _rows(state[f"{name}_nu"], uniq) + (1 - ADAM_B2) * jnp.square(grad)
      new_state[f"{name}_mu"] = _put(state[f"{name}_mu"], uniq, mu)
      new_state[f"{name}_nu"] = _put(state[f"{name}_nu"], uniq, nu)
      mu_hat = mu / _expand(correction1, mu)
      nu_hat = nu / _expand(correction2, nu)
      delta = mu_hat / (jnp.sqrt(nu_hat) + ADAM_EPS)
    else:
      raise ValueError(f"train.sparse_optimizer={optimizer!r}; expected one of {SPARSE_OPTIMIZERS}")
    if weight_decay > 0:
      delta = delta + weight_decay * rows
    new_arrays[name] = _put(array, uniq, rows - learning_rate * delta)
  return new_arrays, new_state


def _expand(per_row: jax.Array, like: jax.Array) -> jax.Array:
  """``[U]`` -> broadcastable against ``like [U, ...]``."""
  return per_row.reshape(per_row.shape + (1,) * (like.ndim - 1))
