"""``qr``: quotient-remainder embeddings (`mec_jax.layers.qr`), ``c_f`` collisions per field.

The collisions come from the byte budget (`mec_jax.methods.budget.plan_qr`). With
``compress.init_tables = "stage_a"`` the two tables start from a count-weighted alternating
least-squares fit of the stage-A table (`mec_jax.compression.group_fit`); ``"random"`` starts the
quotient table like a fresh `Embed` and the remainder table at the combine's identity.

References:
  Shi et al., "Compositional Embeddings Using Complementary Partitions for Memory-Efficient
  Recommendation Systems", KDD 2020.
"""

from __future__ import annotations

import math

import numpy as np

from mec_jax.compression import group_fit
from mec_jax.layers.qr import QRTable
from mec_jax.methods import base, budget, files
from mec_jax.methods.hash import INIT_STD


class QRArtifact(files.Stored, QRTable):
  """A `QRTable` implementing `mec_jax.methods.base.Artifact`."""

  trainable_params = ("quotient_rows", "remainder_rows", "qr_first_order")

  def with_layer(self, layer, **stats) -> QRArtifact:
    del stats
    params = {"quotient_rows": "quotient", "remainder_rows": "remainder"}
    return files.with_params(self, layer, params | {"qr_first_order": "first_order"})


def build_field(spec, table, bias, counts, config, collisions: int, seed: int) -> QRArtifact:
  """The QR tables of one field (``collisions`` ids per quotient row) from stage A's table."""
  c = config.compress
  dim = table.shape[1]
  nq = math.ceil(spec.vocab_size / collisions)
  ids = np.arange(spec.vocab_size)
  qi, ri = ids // collisions, ids % collisions
  if c.init_tables == "random":
    rng = np.random.default_rng(seed)
    quotient = (INIT_STD * rng.standard_normal((nq, dim))).astype(np.float32)
    remainder = np.full((collisions, dim), 1.0 if c.qr_combine == "mult" else 0.0, np.float32)
    fo = None if bias is None else np.zeros(nq + collisions, np.float32)
  else:
    quotient, remainder = group_fit.fit_two_factor(
      table, counts, qi, ri, nq, collisions, c.qr_combine, c.qr_init_iters
    )
    fo = None
    if bias is not None:
      fq, fr = group_fit.fit_two_factor(
        bias[:, None], counts, qi, ri, nq, collisions, "sum", c.qr_init_iters
      )
      fo = np.concatenate([fq[:, 0], fr[:, 0]])
  return QRArtifact(quotient, remainder, fo, spec.vocab_size, c.qr_combine, spec.name)


def build(config, feature_map, ctx: base.StageB) -> dict[str, QRArtifact]:
  """Stage B: the collisions of every compressed field fill the byte budget."""
  fields = base.compressed_fields(config, feature_map)
  budget_rows = budget.budget_bytes(config, feature_map) // (4 * config.model.embed_dim)
  collisions = budget.plan_qr([f.vocab_size for f in fields], budget_rows)

  def make(position, spec, table, bias, counts, seed):
    return build_field(spec, table, bias, counts, config, collisions[position], seed)

  return base.build_from_stage_a(METHOD, config, feature_map, ctx, make)


METHOD = base.Method("qr", QRArtifact, build)
