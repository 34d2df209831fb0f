"""Clustered Compositional Embeddings (CCE): per-column cluster pointers plus a hashed correction.

The ``d`` dims of a row are split into ``c = num_columns`` columns of ``s = d / c`` dims. Column
``j`` has two small tables of ``k = num_clusters`` rows: ``clustered[j]`` indexed by a stored
pointer ``assignments[v, j]`` (the id's cluster), and ``hashed[j]`` indexed by a seeded hash of
the id (`mec_jax.layers.hashed.hash_ids`, seed ``hash_seed + j``, nothing stored)::

  CCE(v) = concat_j ( clustered[j, assignments[v, j]] + hashed[j, hash_j(v)] )

The paper trains this from a hash start and alternates SGD with re-clustering: k-means of the
current column rows of every id gives the new ``clustered`` table and pointers, ``hashed`` restarts
at zero with a fresh hash. mec_jax does the clustering step once, at stage B (see
`mec_jax.methods.cce`). Bytes: ``2 c k s`` float32 plus ``V c`` pointers (``ceil(log2 k)`` bits
bit-packed, or the smallest unsigned dtype as stored).

References:
  Tsang & Ahle, "Clustering the Sketch: Dynamic Compression for Embedding Tables", NeurIPS 2023,
  arXiv 2210.05974.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mec_jax.compression.table import code_dtype, packed_nbytes
from mec_jax.layers import base
from mec_jax.layers.base import lookup_ids
from mec_jax.layers.codebook import Codes
from mec_jax.layers.hashed import hash_ids
from mec_jax.ops import take_rows


def column_hashes(ids: jax.Array, num_columns: int, num_clusters: int, seed: int) -> jax.Array:
  """int32 ``[..., num_columns]``: the hashed row of every id in every column."""
  cols = [hash_ids(ids, num_clusters, seed + j) for j in range(num_columns)]
  return jnp.stack(cols, axis=-1)


@dataclasses.dataclass
class CCETable(base.TableArtifact):
  """Stage-B artifact of CCE for one field.

  Attributes:
    clustered: float32 ``[c, k, s]`` cluster rows per column.
    hashed: float32 ``[c, k, s]`` hashed correction rows per column.
    assignments: unsigned ``[V, c]`` cluster pointer of every id in every column.
    first_order: float32 ``[c, k]`` (an id's weight sums its clusters' entries) or None.
    hash_seed: column ``j`` hashes with seed ``hash_seed + j``.
    name: field name.
  """

  clustered: np.ndarray
  hashed: np.ndarray
  assignments: np.ndarray
  first_order: np.ndarray | None
  hash_seed: int = 0
  name: str = ""
  method = "cce"
  knob_names = ("num_columns", "num_clusters", "hash_seed")
  vocab_size = base.axis_size("assignments", 0)
  num_columns = base.axis_size("clustered", 0)
  num_clusters = base.axis_size("clustered", 1)

  @property
  def dim(self) -> int:
    return int(self.clustered.shape[0] * self.clustered.shape[2])

  def nbytes(self, packed: bool = True) -> int:
    """Both tables as float32 plus the pointers (bit-packed, or as stored)."""
    tables = self.clustered.size * base.FLOAT_BYTES + self.hashed.size * base.FLOAT_BYTES
    if packed:
      return tables + packed_nbytes(self.vocab_size, self.num_columns, self.num_clusters)
    return tables + self.assignments.nbytes

  def first_order_nbytes(self) -> int:
    return self.num_columns * self.num_clusters * base.FLOAT_BYTES


@base.layer_of(CCETable)
class CCEEmbed(nnx.Module):
  """CCE table; satisfies the `Table` interface of `mec_jax.layers.base`.

  Args:
    clustered: float ``[c, k, s]`` (trainable, ``cce_clustered``).
    hashed: float ``[c, k, s]`` (trainable, ``cce_hashed``).
    assignments: int ``[V, c]`` in ``[0, k)`` (fixed; out-of-range ids read the OOV id ``V - 1``).
    first_order: optional float ``[c, k]`` (``cce_first_order``).
    hash_seed: column ``j`` hashes with ``hash_seed + j``.
  """

  def __init__(self, clustered, hashed, assignments, *, first_order=None, hash_seed: int = 0):
    clustered = jnp.asarray(clustered, jnp.float32)
    hashed = jnp.asarray(hashed, jnp.float32)
    assignments = np.asarray(assignments)
    if clustered.ndim != 3 or hashed.shape != clustered.shape:
      raise ValueError(
        f"CCEEmbed: clustered {clustered.shape} and hashed {hashed.shape}; expected equal [c, k, s]"
      )
    c, k, s = (int(n) for n in clustered.shape)
    if assignments.ndim != 2 or assignments.shape[1] != c or assignments.shape[0] < 1:
      raise ValueError(f"CCEEmbed: assignments {assignments.shape}; expected [V >= 1, {c}]")
    if assignments.min() < 0 or assignments.max() >= k:
      raise ValueError(f"CCEEmbed: assignments must lie in [0, {k})")
    self.vocab_size, self.num_columns, self.num_clusters, self.dim = len(assignments), c, k, c * s
    self.hash_seed = int(hash_seed)
    self.cce_clustered = nnx.Param(clustered)
    self.cce_hashed = nnx.Param(hashed)
    self.assignments = Codes(jnp.asarray(assignments.astype(code_dtype(k))))
    self.cce_first_order = base.first_order_param(first_order, (c, k), "CCEEmbed")

  def _rows(self, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Flat row indices ``j * k + row`` ``[..., c]`` of the clustered and the hashed table."""
    ids = lookup_ids(ids, self.vocab_size, self.vocab_size - 1, "CCEEmbed")
    offsets = jnp.arange(self.num_columns, dtype=jnp.int32) * self.num_clusters
    pointers = self.assignments[...][ids].astype(jnp.int32) + offsets  # fixed: no gradient
    hashes = column_hashes(ids, self.num_columns, self.num_clusters, self.hash_seed) + offsets
    return pointers, hashes

  def __call__(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [..., dim]``."""
    pointers, hashes = self._rows(ids)
    s = self.dim // self.num_columns
    clustered = self.cce_clustered[...].reshape(-1, s)
    hashed = self.cce_hashed[...].reshape(-1, s)
    rows = take_rows(clustered, pointers) + take_rows(hashed, hashes)  # [..., c, s]
    return rows.reshape(*rows.shape[:-2], self.dim)

  def first_order(self, ids: jax.Array) -> jax.Array:
    """``ids [...] -> [...]`` (zeros without first-order weights)."""
    pointers, _ = self._rows(ids)
    return base.first_order_at(self.cce_first_order, pointers, summed=True)
