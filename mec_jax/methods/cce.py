"""``cce``: Clustered Compositional Embeddings (`mec_jax.layers.cce`) within the byte budget.

Stage B, ``compress.init_tables = "stage_a"``: the clustering step of CCE on stage A's rows --
k-means (`mec_jax.compression.pq.train_pq`, unweighted as in the paper; two-level,
`mec_jax.compression.two_level`, when the budget asks for tens of thousands of clusters on
millions of ids) of each column of the table gives the cluster rows and the pointers; the hashed table starts at the count-weighted mean
of the residual in each hash bucket (`group_fit.group_mean`), the least-squares fit given the
clusters. ``"random"`` is the paper's start before any clustering: pointers are a second seeded
hash (so the layer is a two-hash compositional embedding), cluster rows small random, hashed rows
zero.

The paper alternates SGD with re-clustering during training. mec_jax clusters once, here: stage
C's loop (`mec_jax.train`) has no hook that rewrites a layer's fixed pointers between epochs, so
a from-scratch ``cce`` run is CCE's hash phase and a warm start is one clustering of trained rows.

References:
  Tsang & Ahle, "Clustering the Sketch: Dynamic Compression for Embedding Tables", NeurIPS 2023,
  arXiv 2210.05974.
"""

from __future__ import annotations

import jax
import numpy as np

from mec_jax.compression import group_fit
from mec_jax.compression.pq import train_pq
from mec_jax.compression.table import code_dtype
from mec_jax.layers.cce import CCETable, column_hashes
from mec_jax.methods import base, budget, files
from mec_jax.methods.hash import INIT_STD

POINTER_SEED_OFFSET = 7919  # seed offset of the from-scratch pointers (a hash unlike the table's)
KMEANS_ITERS = 25


class CCEArtifact(files.Stored, CCETable):
  """A `CCETable` implementing `mec_jax.methods.base.Artifact`."""

  trainable_params = ("cce_clustered", "cce_hashed", "cce_first_order")

  def with_layer(self, layer, **stats) -> CCEArtifact:
    del stats
    params = {"cce_clustered": "clustered", "cce_hashed": "hashed"}
    return files.with_params(self, layer, params | {"cce_first_order": "first_order"})


def build_field(spec, table, bias, counts, config, clusters: int, seed: int) -> CCEArtifact:
  """The CCE tables of one field (``clusters`` rows per column) from stage A's ``table [V, d]``."""
  c = config.compress
  vocab, dim = table.shape
  cols = c.cce_columns
  sub = dim // cols
  ids = np.arange(vocab)
  hashes = np.asarray(column_hashes(ids, cols, clusters, c.hash_seed))
  if c.init_tables == "random":
    rng = np.random.default_rng(seed)
    pointers = np.asarray(column_hashes(ids, cols, clusters, c.hash_seed + POINTER_SEED_OFFSET))
    clustered = (INIT_STD * rng.standard_normal((cols, clusters, sub))).astype(np.float32)
    hashed = np.zeros_like(clustered)
    fo = None if bias is None else np.zeros((cols, clusters), np.float32)
    return CCEArtifact(
      clustered, hashed, pointers.astype(code_dtype(clusters)), fo, c.hash_seed, spec.name
    )
  clustered, pointers = train_pq(jax.random.key(seed), table, None, cols, clusters, KMEANS_ITERS)
  clustered = np.asarray(clustered, np.float32)
  pointers = np.asarray(pointers)
  residual = table.reshape(vocab, cols, sub) - clustered[np.arange(cols), pointers]
  hashed = np.stack(
    [group_fit.group_mean(residual[:, j], hashes[:, j], counts, clusters) for j in range(cols)]
  )
  fo = None
  if bias is not None:  # column 0 carries the bias: the count-weighted mean per cluster
    fo = np.zeros((cols, clusters), np.float32)
    fo[0] = group_fit.group_mean(bias[:, None], pointers[:, 0], counts, clusters)[:, 0]
  return CCEArtifact(
    clustered, hashed, pointers.astype(code_dtype(clusters)), fo, c.hash_seed, spec.name
  )


def build(config, feature_map, ctx: base.StageB) -> dict[str, CCEArtifact]:
  """Stage B: every compressed field gets the most clusters its byte share allows."""
  fields = base.compressed_fields(config, feature_map)
  dim, cols = config.model.embed_dim, config.compress.cce_columns
  budget_bytes = budget.budget_bytes(config, feature_map)
  clusters = budget.plan_cce([f.vocab_size for f in fields], dim, cols, budget_bytes)

  def make(position, spec, table, bias, counts, seed):
    return build_field(spec, table, bias, counts, config, clusters[position], seed)

  return base.build_from_stage_a(METHOD, config, feature_map, ctx, make)


METHOD = base.Method(
  "cce", CCEArtifact, build, config_keys=("target_ratio", "init_tables", "hash_seed", "cce_columns")
)
