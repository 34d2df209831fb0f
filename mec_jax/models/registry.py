"""Backbone registry: names used by ``config.model.name`` / ``config.pretrain.model``.

``build_model(name, embedding, rngs=..., **hparams)`` builds one backbone from explicit
hyper-parameters; ``build_model_from_config`` maps the shared ``config.model`` keys onto the
constructor of each backbone, passing only the keys that backbone takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from flax import nnx

from mec_jax.layers.base import FieldEmbedder
from mec_jax.models.autoint import AutoInt
from mec_jax.models.dcnv2 import DCNv2
from mec_jax.models.deepfm import DeepFM
from mec_jax.models.fibinet import FiBiNET
from mec_jax.models.finalmlp import FinalMLP
from mec_jax.models.fm import FM
from mec_jax.models.gdcn import GDCN
from mec_jax.models.lr import LR
from mec_jax.models.pnn import PNN
from mec_jax.models.widedeep import WideDeep

_MODELS: dict[str, type[nnx.Module]] = {
  "lr": LR,
  "fm": FM,
  "deepfm": DeepFM,
  "widedeep": WideDeep,
  "dcnv2": DCNv2,
  "pnn": PNN,
  "gdcn": GDCN,
  "fibinet": FiBiNET,
  "autoint": AutoInt,
  "finalmlp": FinalMLP,
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)

# Keys of config.model that are backbone hyper-parameters (the rest, e.g. name, embed_dim,
# embedding_regularizer, are used by the caller or the train step).
CONFIG_KEYS = (
  "hidden_units",
  "dropout",
  "batch_norm",
  "num_cross_layers",
  "structure",
  "low_rank",
  "num_experts",
  "num_heads",
  "num_attention_layers",
  "attention_dim",
)


def model_class(name: str) -> type[nnx.Module]:
  """The backbone class registered under ``name``."""
  try:
    return _MODELS[name]
  except KeyError:
    raise ValueError(f"unknown model {name!r}; expected one of {list(MODEL_NAMES)}") from None


def hparam_names(name: str) -> tuple[str, ...]:
  """Keyword hyper-parameters the backbone ``name`` accepts (``embedding``/``rngs`` excluded)."""
  params = inspect.signature(model_class(name).__init__).parameters
  return tuple(p for p in params if p not in ("self", "embedding", "rngs"))


def build_model(name: str, embedding: FieldEmbedder, *, rngs: nnx.Rngs, **hparams) -> nnx.Module:
  """Builds backbone ``name`` over ``embedding``.

  Args:
    name: one of `MODEL_NAMES`.
    embedding: any `FieldEmbedder` (e.g. `FieldEmbedding`).
    rngs: ``nnx.Rngs`` with ``params`` (and ``dropout`` when dropout > 0) streams.
    **hparams: constructor keywords of that backbone (see `hparam_names`).

  Returns:
    the backbone; ``model(ids, values)`` gives float32 logits ``[batch]``.
  """
  cls = model_class(name)
  unknown = sorted(set(hparams) - set(hparam_names(name)))
  if unknown:
    raise ValueError(
      f"model {name!r} does not take {unknown}; its hyper-parameters are {list(hparam_names(name))}"
    )
  return cls(embedding, rngs=rngs, **hparams)


def hparams_from_config(name: str, model_config: Mapping[str, Any]) -> dict[str, Any]:
  """The subset of ``model_config`` (a ``config.model`` ConfigDict or dict) that ``name`` takes.

  ``hidden_units == ()`` means the backbone's default and is left out; sequences become tuples.
  """
  accepted = set(hparam_names(name))
  hparams = {}
  for key in CONFIG_KEYS:
    if key not in accepted or key not in model_config:
      continue
    value = model_config[key]
    if key == "hidden_units":
      value = tuple(int(h) for h in value)
      if not value:
        continue
    hparams[key] = value
  return hparams


def build_model_from_config(
  name: str, embedding: FieldEmbedder, model_config: Mapping[str, Any], *, rngs: nnx.Rngs
) -> nnx.Module:
  """`build_model` with hyper-parameters taken from ``config.model`` (see `hparams_from_config`)."""
  return build_model(name, embedding, rngs=rngs, **hparams_from_config(name, model_config))
