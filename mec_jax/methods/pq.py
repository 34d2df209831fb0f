"""``pq``: MEC and its variants (`quantize.variant`), product-quantized codes + codebooks.

Stage B is `mec_jax.compression.quantizer.quantize_table` on every compressed field, with
``quantize.num_subspaces/codebook_size`` sized by the byte budget when ``compress.target_ratio``
is set: up to ``compress.pq_candidates`` settings (M, K) within it (`budget.pq_shapes`) are each
quantized and the one whose swap-in model scores best on validation is kept
(`mec_jax.methods.selection`; one candidate: the most bytes, `budget.pq_config`). Its artifact is
the `CompressedTable` of `mec_jax.compression` (which imports nothing of the rest of mec_jax),
adapted here to the `Artifact` protocol: `PQTable` adds the layer (`CodebookEmbed`) it becomes.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
from absl import logging
from flax import nnx

from mec_jax import artifacts
from mec_jax.compression import quantizer
from mec_jax.compression.table import CompressedTable
from mec_jax.errors import ConfigError
from mec_jax.layers.codebook import CodebookEmbed
from mec_jax.methods import base, budget, selection


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

  def knobs(self) -> dict:
    """`CompressedTable.knobs` and, when stage B chose (M, K) on validation, the valid scores of
    every setting it tried (``shape_selection``)."""
    chosen = self.stats.get("shape_selection")
    return super().knobs() | ({"shape_selection": chosen} if chosen else {})

  def to_layer(self, *, rngs: nnx.Rngs, first_order: bool = True) -> CodebookEmbed:
    return CodebookEmbed.from_table(self, rngs=rngs, first_order=first_order)

  def with_layer(self, layer: CodebookEmbed, **stats) -> PQTable:
    """The layer's codes and (trained) codebooks; variant and usage entropy carried over (the
    codes are frozen in stage C, so the entropy is unchanged); ``stats`` replace the stats."""
    table = layer.to_table(
      name=self.name, variant=self.variant, usage_entropy=self.usage_entropy, stats=dict(stats)
    )
    return PQTable.of(table)


def quantize_field(config, feature_map, ctx: base.StageB, spec) -> PQTable:
  """Stage B of MEC on one field with ``config.quantize`` as it is (nothing written)."""
  settings = quantizer.QuantizeSettings.from_config(config.quantize)
  path = ctx.table_path(spec.name)
  table, bias = artifacts.load_stage_a_table(path, spec, config.model.embed_dim)
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


def build_tables(config, feature_map, ctx: base.StageB) -> dict[str, PQTable]:
  """Stage B of MEC with ``config.quantize`` as it is: one `PQTable` per compressed field
  (saved ones reused, new ones saved)."""
  return base.build_each(
    METHOD, config, feature_map, ctx, lambda _, spec: quantize_field(config, feature_map, ctx, spec)
  )


def candidate_count(config) -> int:
  """``compress.pq_candidates``, an int >= 1 (ConfigError naming the key otherwise)."""
  value = config.compress.pq_candidates
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(
      f"config.compress.pq_candidates={value!r}; expected an integer >= 1 (1: the most bytes)"
    )
  return value


def shape_label(shape: tuple[int, int]) -> str:
  """``"M=4,K=16"``: a setting's key in ``shape_selection``."""
  return f"M={shape[0]},K={shape[1]}"


def build(config, feature_map, ctx: base.StageB) -> dict[str, PQTable]:
  """Stage B: the saved tables, or each (M, K) within the byte budget built and the best kept.

  The settings are `budget.pq_shapes` (``compress.pq_candidates`` of them, the most bytes
  first); each set of tables is scored by its swap-in model on validation (``ctx.evaluate``)
  and the best one saved, the scores in its stats (``shape_selection``). With one setting, or
  without ``ctx.evaluate`` (external tables), the first setting, field by field, as
  `build_tables`.
  """
  candidate_count(config)
  shapes = budget.pq_shapes(config, feature_map)
  fields = base.compressed_fields(config, feature_map)
  saved = all(os.path.exists(base.field_path(METHOD, ctx, f.name)) for f in fields)
  if saved or len(shapes) == 1 or ctx.evaluate is None:
    return build_tables(budget.pq_config(config, feature_map), feature_map, ctx)  # shapes[0]

  def build_at(shape):
    shaped = budget.with_pq_shape(config, shape)
    return {f.name: quantize_field(shaped, feature_map, ctx, f) for f in fields}

  best, scores = selection.best_on_valid(shapes, build_at, ctx, shape_label, "pq (M, K)")
  return selection.save_kept(METHOD, ctx, best, "shape_selection", scores)


METHOD = base.Method("pq", PQTable, build, suffix="", config_keys=("target_ratio", "pq_candidates"))
