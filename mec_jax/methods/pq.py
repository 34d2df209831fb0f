"""``pq``: MEC and its variants (`quantize.variant`), product-quantized codes + codebooks.

Stage B is `mec_jax.compression.quantizer.quantize_table` on every compressed field, with
``quantize.num_subspaces/codebook_size`` sized by the byte budget when ``compress.target_ratio``
is set (`mec_jax.methods.budget.pq_config`). Its artifact is the `CompressedTable` of
`mec_jax.compression` (which imports nothing of the rest of mec_jax), adapted here to the
`Artifact` protocol: `PQTable` adds the layer (`CodebookEmbed`) it becomes.
"""

from __future__ import annotations

import dataclasses
import time

import jax
from absl import logging
from flax import nnx

from mec_jax import artifacts
from mec_jax.compression import quantizer
from mec_jax.compression.table import CompressedTable
from mec_jax.layers.codebook import CodebookEmbed
from mec_jax.methods import base, budget


class PQTable(CompressedTable):
  """A `CompressedTable` implementing `mec_jax.methods.base.Artifact`."""

  trainable_params = ("codebooks", "first_order_codebook")

  @classmethod
  def of(cls, table: CompressedTable) -> PQTable:
    """``table`` as a `PQTable` (the same arrays, not copied)."""
    if isinstance(table, cls):
      return table
    return cls(**{f.name: getattr(table, f.name) for f in dataclasses.fields(table)})

  @classmethod
  def load(cls, path: str) -> PQTable:
    """`CompressedTable.load`, and codebooks checked finite (ArtifactError naming the file)."""
    table = super().load(path)
    artifacts.check_finite(table.codebooks, f"{path}: codebooks")
    return table

  def to_layer(self, *, rngs: nnx.Rngs, first_order: bool = True) -> CodebookEmbed:
    return CodebookEmbed.from_table(self, rngs=rngs, first_order=first_order)

  def with_layer(self, layer: CodebookEmbed, **stats) -> PQTable:
    """The layer's codes and (trained) codebooks; variant and usage entropy carried over (the
    codes are frozen in stage C, so the entropy is unchanged); ``stats`` replace the stats."""
    table = layer.to_table(
      name=self.name, variant=self.variant, usage_entropy=self.usage_entropy, stats=dict(stats)
    )
    return PQTable.of(table)


def build_tables(config, feature_map, ctx: base.StageB) -> dict[str, PQTable]:
  """Stage B of MEC with ``config.quantize`` as it is: one `PQTable` per compressed field."""
  settings = quantizer.QuantizeSettings.from_config(config.quantize)
  dim = config.model.embed_dim

  def make(position, spec):
    del position
    path = ctx.table_path(spec.name)
    table, bias = artifacts.load_stage_a_table(path, spec, dim)
    counts = artifacts.load_stage_a_counts(path, spec)  # external tables: theirs
    logging.info("quantize: field %s, vocab %d", spec.name, spec.vocab_size)
    start = time.time()
    index = feature_map.index(spec.name)
    key = jax.random.fold_in(jax.random.key(config.quantize.seed), index)
    progress = ctx.progress(spec.name, settings.epochs) if ctx.progress else None
    compressed = quantizer.quantize_table(
      key, table, counts, settings, bias=bias, progress=progress, name=spec.name, mesh=ctx.mesh
    )
    compressed.name = spec.name
    compressed.stats["seconds"] = time.time() - start
    return PQTable.of(compressed)

  return base.build_each(METHOD, config, feature_map, ctx, make)


def build(config, feature_map, ctx: base.StageB) -> dict[str, PQTable]:
  """`build_tables` at the (M, K) of the byte budget, when ``compress.target_ratio`` is set."""
  return build_tables(budget.pq_config(config, feature_map), feature_map, ctx)


METHOD = base.Method("pq", PQTable, build, suffix="", config_keys=("target_ratio",))
