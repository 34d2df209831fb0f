"""Embedding modules (full tables, CodebookEmbed) and shared blocks."""

from mec_jax.layers import linen  # `linen.CodebookEmbed.from_table(table)`: for Flax linen models
from mec_jax.layers.blocks import MLP, CrossNetMix, CrossNetV2, GatedCrossNet
from mec_jax.layers.codebook import CodebookEmbed, Codes
from mec_jax.layers.embed import Embed
from mec_jax.layers.field_embedding import FieldEmbedding

__all__ = [
  "CodebookEmbed",
  "Codes",
  "CrossNetMix",
  "CrossNetV2",
  "Embed",
  "FieldEmbedding",
  "GatedCrossNet",
  "MLP",
  "linen",
]
