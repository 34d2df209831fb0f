"""``robez``: ROBE-Z (`mec_jax.layers.robez`), one shared array per field within the byte budget.

Stage B, ``compress.init_tables = "stage_a"``: every array entry starts at the count-weighted mean
of the stage-A values ``x_v[i]`` that read it (`group_fit.group_mean` over the positions of
`RobeTable.positions`). Each (id, dim) reads exactly one entry, so this is the exact weighted
least-squares fit of the stage-A table (weights: train counts); entries nobody reads stay 0.
``"random"`` starts the array like a fresh `Embed` (normal, std 1e-4).

References:
  Desai, Chou & Shrivastava, "Random Offset Block Embedding (ROBE) for compressed embedding tables
  in deep learning recommendation systems", MLSys 2022, arXiv 2108.02191.
"""

from __future__ import annotations

import numpy as np

from mec_jax.compression import group_fit
from mec_jax.layers.hashed import hash_ids
from mec_jax.layers.robez import RobeTable, first_order_size
from mec_jax.methods import base, budget, files
from mec_jax.methods.hash import INIT_STD


class RobeArtifact(files.Stored, RobeTable):
  """A `RobeTable` implementing `mec_jax.methods.base.Artifact`."""

  trainable_params = ("robe_array", "robe_first_order")

  def with_layer(self, layer, **stats) -> RobeArtifact:
    del stats
    return files.with_params(
      self, layer, {"robe_array": "array", "robe_first_order": "first_order"}
    )


def build_field(spec, table, bias, counts, config, size: int, seed: int) -> RobeArtifact:
  """The shared array (``size`` floats) of one field from its stage-A ``table [V, d]``."""
  c = config.compress
  vocab, dim = table.shape
  art = RobeArtifact(
    np.zeros(size, np.float32), None, vocab, dim, c.robez_blocks, c.hash_seed, spec.name
  )
  fo_size = first_order_size(size, dim)
  if c.init_tables == "random":
    art.array = (INIT_STD * np.random.default_rng(seed).standard_normal(size)).astype(np.float32)
    art.first_order = None if bias is None else np.zeros(fo_size, np.float32)
    return art
  positions = art.positions().reshape(-1)
  weights = np.repeat(counts, dim)
  art.array = group_fit.group_mean(table.reshape(-1, 1), positions, weights, size)[:, 0]
  if bias is not None:
    slots = np.asarray(hash_ids(np.arange(vocab), fo_size, c.hash_seed + c.robez_blocks))
    art.first_order = group_fit.group_mean(bias[:, None], slots, counts, fo_size)[:, 0]
  return art


def build(config, feature_map, ctx: base.StageB) -> dict[str, RobeArtifact]:
  """Stage B: the fields share the byte budget in proportion to their vocabularies."""
  fields = base.compressed_fields(config, feature_map)
  sizes = budget.plan_robez(
    [f.vocab_size for f in fields], budget.budget_bytes(config, feature_map)
  )

  def make(position, spec, table, bias, counts, seed):
    return build_field(spec, table, bias, counts, config, sizes[position], seed)

  return base.build_from_stage_a(METHOD, config, feature_map, ctx, make)


METHOD = base.Method(
  "robez",
  RobeArtifact,
  build,
  config_keys=("target_ratio", "init_tables", "hash_seed", "robez_blocks"),
)
