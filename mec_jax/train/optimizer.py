"""The dense optimizer of stages A and C, and the one gradient clip.

`make_optimizer` is Adam (AdamW with weight decay) per learning-rate group (``lr_overrides``:
parameter-path substring -> rate, 0 freezes) followed by an lr-scale knob that plateau decay turns
(`set_lr_scale`) without recompiling the step. Clipping is not inside it: the train step clips
once, with `clip_by_global_norm` over the dense gradients and the sparse tables' touched-row
gradients together, so the norm is the one a dense step over the whole model would clip with.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
import optax
from absl import logging


def clip_by_global_norm(grads, max_norm: float):
  """``grads`` (any pytree) scaled to global L2 norm ``<= max_norm`` (0 disables).

  Optax's ``clip_by_global_norm`` over the whole tree: the train step passes the dense gradients
  and the touched rows' gradients together (the non-zero rows of the dense table gradient).
  """
  if max_norm <= 0:
    return grads
  clipped, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
  return clipped


def param_labels(params, lr_overrides: Mapping[str, float]):
  """Labels each parameter with the first key of ``lr_overrides`` found in its path, else "default".

  Paths are "/"-joined attribute names, e.g. ``embedding/tables/3/codebooks/value``.
  """

  def label(path, _):
    return override_key(jax.tree_util.keystr(path, simple=True, separator="/"), lr_overrides)

  return jax.tree_util.tree_map_with_path(label, params)


def override_key(path_text: str, lr_overrides: Mapping[str, float] | None) -> str:
  """The first key of ``lr_overrides`` contained in ``path_text``, else ``"default"``."""
  return next((key for key in lr_overrides or {} if key in path_text), "default")


def learning_rate_of(
  path_text: str, learning_rate: float, lr_overrides: Mapping[str, float] | None
) -> float:
  """The learning rate `make_optimizer` gives the parameter at ``path_text`` (0: frozen)."""
  key = override_key(path_text, lr_overrides)
  return learning_rate if key == "default" else float(lr_overrides[key])


def make_optimizer(
  learning_rate: float,
  *,
  weight_decay: float = 0.0,
  lr_overrides: Mapping[str, float] | None = None,
) -> optax.GradientTransformation:
  """Adam (AdamW when ``weight_decay > 0``) with an lr scale knob; gradients come clipped.

  The last element is ``inject_hyperparams(scale)``: its ``step_size`` multiplies every learning
  rate, so reducing the lr on a plateau (`set_lr_scale`) changes a value, not the compiled step.

  Args:
    learning_rate: base Adam learning rate.
    weight_decay: decoupled weight decay (AdamW) on every parameter.
    lr_overrides: ``{path substring: learning rate}``; parameters whose path contains the
      substring use that rate (first matching key wins), e.g. ``{"codebooks": 1e-2}``.
      A rate of 0 (here or as ``learning_rate``) freezes those parameters.
  """
  for key, lr in {"default": learning_rate, **(lr_overrides or {})}.items():
    if not lr >= 0:
      raise ValueError(f"learning rate for {key!r} must be >= 0 (0 freezes), got {lr}")

  def adam(lr):
    if lr == 0:  # Frozen: no update and no Adam moments for these parameters.
      return optax.set_to_zero()
    parts = [optax.scale_by_adam()]
    if weight_decay > 0:
      parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale(-lr))
    return optax.chain(*parts)

  if lr_overrides:
    overrides = dict(lr_overrides)
    if "default" in overrides:
      raise ValueError("lr_overrides: 'default' is reserved; set learning_rate instead")
    transforms = {"default": adam(learning_rate)} | {k: adam(v) for k, v in overrides.items()}
    inner = optax.multi_transform(transforms, lambda params: param_labels(params, overrides))
  else:
    inner = adam(learning_rate)
  # Position 0 held the clip in earlier versions (its state is empty); kept so that their
  # checkpoints restore. The step clips with `clip_by_global_norm`.
  return optax.chain(optax.identity(), inner, optax.inject_hyperparams(optax.scale)(step_size=1.0))


def log_lr_overrides(params, lr_overrides: Mapping[str, float] | None) -> dict[str, int]:
  """Counts parameters per override key (warns about keys that match nothing)."""
  if not lr_overrides:
    return {}
  labels = jax.tree.leaves(param_labels(params, lr_overrides))
  counts = {key: labels.count(key) for key in lr_overrides}
  for key, count in counts.items():
    if count == 0:
      logging.warning("lr_overrides: no parameter path contains %r", key)
  return counts


def lr_scale(opt_state) -> float:
  """Current learning-rate multiplier of an optimizer from `make_optimizer`."""
  return float(lr_scale_array(opt_state))


def lr_scale_array(opt_state) -> jax.Array:
  """The multiplier as an array (jit-safe; the sparse tables' rates use it too)."""
  return opt_state[-1].hyperparams["step_size"]


def set_lr_scale(opt_state, scale: float):
  """Returns ``opt_state`` with the learning-rate multiplier set to ``scale``."""
  inject = opt_state[-1]
  old = inject.hyperparams["step_size"]
  # From host data on every process: a device_put of a local array onto a sharding that spans
  # several processes builds an array Orbax cannot save.
  host = np.asarray(scale, old.dtype)
  value = jax.make_array_from_callback(host.shape, old.sharding, lambda _: host)
  inject = inject._replace(hyperparams={**inject.hyperparams, "step_size": value})
  return (*opt_state[:-1], inject)
