"""``hash``: the hashing trick (`mec_jax.layers.hashed`), ``B_f = V_f / r`` rows per field.

With ``compress.init_tables = "stage_a"`` a bucket starts from the count-weighted mean of the
stage-A rows hashed into it (`mec_jax.compression.group_fit`), so the hashing trick gets the same
swap-in and warm-started stage C as PQ; ``"random"`` starts it like a fresh `Embed`.
"""

from __future__ import annotations

import numpy as np

from mec_jax.compression import group_fit
from mec_jax.layers.hashed import HashedTable
from mec_jax.methods import base, budget, files

INIT_STD = 1e-4  # as a fresh `Embed`


class HashArtifact(files.Stored, HashedTable):
  """A `HashedTable` implementing `mec_jax.methods.base.Artifact`."""

  trainable_params = ("hashed_rows", "hashed_first_order")

  def with_layer(self, layer, **stats) -> HashArtifact:
    del stats
    return files.with_params(
      self, layer, {"hashed_rows": "rows", "hashed_first_order": "first_order"}
    )


def build_field(spec, table, bias, counts, config, rows: int, seed: int) -> HashArtifact:
  """The hashed table of one field (``rows`` buckets) from its stage-A ``table [V, d]``."""
  c = config.compress
  dim = table.shape[1]
  art = HashArtifact(
    np.zeros((rows, dim), np.float32),
    None,
    spec.vocab_size,
    c.hash_seed,
    c.hash_function,
    spec.name,
  )
  if c.init_tables == "random":
    rng = np.random.default_rng(seed)
    art.rows = (INIT_STD * rng.standard_normal((rows, dim))).astype(np.float32)
    art.first_order = None if bias is None else np.zeros(rows, np.float32)
    return art
  buckets = art.buckets()
  art.rows = group_fit.group_mean(table, buckets, counts, rows)
  if bias is not None:
    art.first_order = group_fit.group_mean(bias[:, None], buckets, counts, rows)[:, 0]
  return art


def build(config, feature_map, ctx: base.StageB) -> dict[str, HashArtifact]:
  """Stage B: every compressed field gets ``V_f / r`` buckets (``r`` from the budget)."""
  fields = base.compressed_fields(config, feature_map)
  dim = config.model.embed_dim
  ratio = config.compress.target_ratio
  if ratio <= 0:
    ratio = sum(f.vocab_size for f in fields) * dim * 4 / budget.budget_bytes(config, feature_map)
  rows = [max(1, int(f.vocab_size / ratio)) for f in fields]

  def make(position, spec, table, bias, counts, seed):
    return build_field(spec, table, bias, counts, config, rows[position], seed)

  return base.build_from_stage_a(METHOD, config, feature_map, ctx, make)


METHOD = base.Method(
  "hash",
  HashArtifact,
  build,
  config_keys=("target_ratio", "init_tables", "hash_function", "hash_seed"),
)
