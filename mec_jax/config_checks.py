"""Checks of the config keys users set most often, before any long work (DESIGN §7)."""

from __future__ import annotations

from mec_jax import methods
from mec_jax.compression import quantizer
from mec_jax.compression.settings import VARIANTS
from mec_jax.models import registry

STAGES = ("all", "pretrain", "quantize", "finetune", "report", "export")


def validate_config(config) -> None:
  """Checks the keys users set most often; raises ValueError naming the key and the choices."""
  if config.stage not in STAGES:
    raise ValueError(f"config.stage={config.stage!r}; expected one of {STAGES}")
  for key in ("model.name", "pretrain.model"):
    name = config.model.name if key == "model.name" else config.pretrain.model
    if name not in registry.MODEL_NAMES:
      raise ValueError(f"config.{key}={name!r}; expected one of {sorted(registry.MODEL_NAMES)}")
  methods.validate(config)
  q = config.quantize
  if q.variant not in VARIANTS:
    raise ValueError(f"config.quantize.variant={q.variant!r}; expected one of {VARIANTS}")
  dim = config.model.embed_dim
  if dim < 1:
    raise ValueError(f"config.model.embed_dim={dim}; expected a positive integer")
  if q.num_subspaces < 1 or dim % q.num_subspaces:
    raise ValueError(
      f"config.quantize.num_subspaces={q.num_subspaces} must divide config.model.embed_dim={dim}"
    )
  if q.codebook_size < 2:
    raise ValueError(f"config.quantize.codebook_size={q.codebook_size}; expected >= 2")
  quantizer.QuantizeSettings.from_config(q)  # stage B's own checks, before stage A runs
  if config.train.batch_size < 1 or config.train.epochs < 1:
    raise ValueError(
      f"config.train.batch_size={config.train.batch_size}, config.train.epochs="
      f"{config.train.epochs}; both must be >= 1"
    )
