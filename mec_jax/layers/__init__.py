"""Embedding modules (full tables, CodebookEmbed) and shared blocks."""

from mec_jax.layers.codebook import CodebookEmbed, Codes

__all__ = ["CodebookEmbed", "Codes"]
