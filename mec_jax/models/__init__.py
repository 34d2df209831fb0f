"""CTR backbones, one per file, and the registry."""

from mec_jax.models.autoint import AutoInt
from mec_jax.models.dcnv2 import DCNv2
from mec_jax.models.deepfm import DeepFM
from mec_jax.models.fibinet import FiBiNET
from mec_jax.models.finalmlp import FinalMLP
from mec_jax.models.fm import FM
from mec_jax.models.gdcn import GDCN
from mec_jax.models.lr import LR
from mec_jax.models.pnn import PNN
from mec_jax.models.registry import (
  MODEL_NAMES,
  build_model,
  build_model_from_config,
  hparams_from_config,
)
from mec_jax.models.widedeep import WideDeep

__all__ = [
  "MODEL_NAMES",
  "LR",
  "FM",
  "DeepFM",
  "WideDeep",
  "DCNv2",
  "PNN",
  "GDCN",
  "FiBiNET",
  "AutoInt",
  "FinalMLP",
  "build_model",
  "build_model_from_config",
  "hparams_from_config",
]
