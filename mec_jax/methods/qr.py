"""``qr``: quotient-remainder embeddings (`mec_jax.layers.qr`), ``c_f`` collisions per field.

The collisions come from the byte budget (`mec_jax.methods.budget.plan_qr`: the smallest ``c``
that fits, so the large table has ``ceil(V / c)`` rows, about the hashing trick's ``V / r``, and the
small one ``c``). ``compress.qr_large_index`` picks which id split indexes the large table. With
``compress.init_tables = "stage_a"`` the two tables start from a count-weighted alternating
least-squares fit of the stage-A table (`mec_jax.compression.group_fit`); ``"random"`` starts
them as ``compress.qr_random_init`` says (`random_tables`; default: an id's row is distributed as
a fresh `Embed` row's).

References:
  Shi et al., "Compositional Embeddings Using Complementary Partitions for Memory-Efficient
  Recommendation Systems", KDD 2020.
"""

from __future__ import annotations

import math

import numpy as np

from mec_jax.compression import group_fit
from mec_jax.layers.qr import QRTable, qr_index
from mec_jax.methods import base, budget, files
from mec_jax.methods.hash import INIT_STD

RANDOM_INITS = ("sign", "ones", "dlrm")


class QRArtifact(files.Stored, QRTable):
  """A `QRTable` implementing `mec_jax.methods.base.Artifact`."""

  trainable_params = ("quotient_rows", "remainder_rows", "qr_first_order")

  def with_layer(self, layer, **stats) -> QRArtifact:
    del stats
    params = {"quotient_rows": "quotient", "remainder_rows": "remainder"}
    return files.with_params(self, layer, params | {"qr_first_order": "first_order"})


def random_tables(
  vocab_size: int, dim: int, collisions: int, combine: str, init: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """From-scratch ``(large [ceil(V / c), dim], small [c, dim])`` float32 tables.

  ``init`` (``compress.qr_random_init``):

  * ``sign``: an id's initial row has the statistics of a fresh `Embed` row (``N(0, s²)``,
    ``s = INIT_STD``) and ids sharing a large row start uncorrelated: with ``mult`` the large
    table is ``N(0, s²)`` and the small one random signs ``±1``; with ``sum`` both are
    ``N(0, s² / 2)``.
  * ``ones``: the large table ``N(0, s²)`` and the small one at the combine's identity (1 for
    ``mult``, 0 for ``sum``): ids sharing a large row start equal.
  * ``dlrm``: both ``U(sqrt(1 / V), 1)``, what ``QREmbeddingBag.reset_parameters`` draws
    (``nn.init.uniform_(w, sqrt(1 / V))`` sets the lower bound): rows of mean ~0.25 (mult).
  """
  nq = math.ceil(vocab_size / collisions)
  if init == "dlrm":
    low = math.sqrt(1 / vocab_size)
    large = rng.uniform(low, 1.0, (nq, dim))
    return large.astype(np.float32), rng.uniform(low, 1.0, (collisions, dim)).astype(np.float32)
  if init not in RANDOM_INITS:
    raise ValueError(f"QR: random init {init!r}; expected one of {RANDOM_INITS}")
  if combine == "sum":
    std = INIT_STD / math.sqrt(2) if init == "sign" else INIT_STD
    large = std * rng.standard_normal((nq, dim))
    small = std * rng.standard_normal((collisions, dim)) * (init == "sign")
    return large.astype(np.float32), small.astype(np.float32)
  large = INIT_STD * rng.standard_normal((nq, dim))
  small = (
    rng.choice([-1.0, 1.0], (collisions, dim)) if init == "sign" else np.ones((collisions, dim))
  )
  return large.astype(np.float32), small.astype(np.float32)


def build_field(spec, table, bias, counts, config, collisions: int, seed: int) -> QRArtifact:
  """The QR tables of one field (``collisions`` small-table rows) from stage A's table."""
  c = config.compress
  dim = table.shape[1]
  nq = math.ceil(spec.vocab_size / collisions)
  large, small = qr_index(np.arange(spec.vocab_size), spec.vocab_size, collisions, c.qr_large_index)
  if c.init_tables == "random":
    rng = np.random.default_rng(seed)
    quotient, remainder = random_tables(
      spec.vocab_size, dim, collisions, c.qr_combine, c.qr_random_init, rng
    )
    fo = None if bias is None else np.zeros(nq + collisions, np.float32)
  else:
    quotient, remainder = group_fit.fit_two_factor(
      table, counts, large, small, nq, collisions, c.qr_combine, c.qr_init_iters
    )
    fo = None
    if bias is not None:
      fq, fr = group_fit.fit_two_factor(
        bias[:, None], counts, large, small, nq, collisions, "sum", c.qr_init_iters
      )
      fo = np.concatenate([fq[:, 0], fr[:, 0]])
  return QRArtifact(
    quotient, remainder, fo, spec.vocab_size, c.qr_combine, spec.name, c.qr_large_index
  )


def build(config, feature_map, ctx: base.StageB) -> dict[str, QRArtifact]:
  """Stage B: the collisions of every compressed field fill the byte budget."""
  fields = base.compressed_fields(config, feature_map)
  budget_rows = budget.budget_bytes(config, feature_map) // (4 * config.model.embed_dim)
  collisions = budget.plan_qr([f.vocab_size for f in fields], budget_rows)

  def make(position, spec, table, bias, counts, seed):
    return build_field(spec, table, bias, counts, config, collisions[position], seed)

  return base.build_from_stage_a(METHOD, config, feature_map, ctx, make)


METHOD = base.Method(
  "qr",
  QRArtifact,
  build,
  config_keys=(
    "target_ratio",
    "init_tables",
    "hash_seed",
    "qr_combine",
    "qr_init_iters",
    "qr_large_index",
    "qr_random_init",
  ),
)
