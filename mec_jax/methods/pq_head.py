"""``pq_head``: popularity-split PQ (`mec_jax.layers.pq_head`) within the byte budget.

Each compressed field's byte share (``compress.target_ratio``; shares in proportion to ``V_f``,
as CCE and ROBE-Z split them) is split: ``compress.head_fraction`` of it buys float32 rows for
the most frequent ids (stage A's rows, their train counts from stage A), the rest of the budget
(summed over fields) buys one PQ setting ``(M, K)`` for every tail (`budget.plan_pq`: the most
bytes, as ``pq`` with ``compress.pq_candidates=1`` plans it) and stage B of ``pq``
(`mec_jax.compression.quantizer.quantize_table`, PWR weights included) quantizes the tail rows.
With a head fraction of 0 this is that ``pq`` exactly.

A list of head fractions (the default ``(0.0, 0.1, 0.25, 0.5)``) is tried in turn: each one's
swap-in model (stage-A weights with these tables, no training) is scored on the validation split
(``train.monitor``, AUC - logloss by default) and the best fraction's tables are kept; the
scores are in ``report.json`` (``compressed_fields.<field>.head_selection``). Without a stage-A
model (``pretrain.external_tables``) the first fraction is kept.

Beyond the MEC paper: the paper gives every id codes; here the bytes go where popularity says.
"""

from __future__ import annotations

import math
import os
import time

import jax
import numpy as np
from absl import logging

from mec_jax import artifacts
from mec_jax.compression import quantizer
from mec_jax.compression.table import bits_per_code
from mec_jax.errors import ArtifactError, ConfigError
from mec_jax.layers.pq_head import FLOAT_BYTES, PQHeadTable
from mec_jax.methods import base, budget, files, selection


class PQHeadArtifact(files.Stored, PQHeadTable):
  """A `PQHeadTable` implementing `mec_jax.methods.base.Artifact`."""

  trainable_params = ("pqh_head_rows", "pqh_codebooks", "pqh_head_first_order", "pqh_first_order")

  @classmethod
  def load(cls, path: str) -> PQHeadArtifact:
    """`files.Stored.load`, checked (ArtifactError naming the file)."""
    arrays, meta = files.load_dataclass(path, cls.method)
    try:
      art = files.build_dataclass(cls, arrays, meta)
    except (TypeError, ValueError) as err:
      raise ArtifactError(f"{path}: {err}; delete it to recompute") from err
    for name in ("head_rows", "codebooks", "head_first_order", "first_order"):
      array = getattr(art, name)
      if array is not None and array.size:
        artifacts.check_finite(array, f"{path}: {name}")
    return art

  def with_layer(self, layer, **stats) -> PQHeadArtifact:
    del stats
    params = {
      "pqh_head_rows": "head_rows",
      "pqh_codebooks": "codebooks",
      "pqh_head_first_order": "head_first_order",
      "pqh_first_order": "first_order",
    }
    return files.with_params(self, layer, params)


def head_fractions(config) -> tuple[float, ...]:
  """``compress.head_fraction`` as a tuple of fractions in ``[0, 1)`` (ConfigError otherwise)."""
  value = config.compress.head_fraction
  fractions = tuple(value) if isinstance(value, (list, tuple)) else (value,)
  if not fractions or not all(isinstance(f, (int, float)) and 0 <= f < 1 for f in fractions):
    raise ConfigError(
      f"config.compress.head_fraction={value!r}; expected a fraction in [0, 1) or a list of them"
    )
  return tuple(float(f) for f in fractions)


def head_ids(counts: np.ndarray, num_head: int) -> np.ndarray:
  """int64 ``[num_head]``: the most frequent ids (ties: the smaller id), sorted."""
  order = np.lexsort((np.arange(len(counts)), -np.asarray(counts)))
  return np.sort(order[:num_head])


def plan_head(counts: np.ndarray, dim: int, head_bytes: int) -> tuple[int, bool]:
  """``(H, prefix)``: the most head rows within ``head_bytes`` (at most ``V - 1``: a tail stays),
  and whether the ``H`` most frequent ids are ``0..H-1`` (then no head ids are stored)."""
  vocab = len(counts)
  num = min(vocab - 1, head_bytes // (dim * FLOAT_BYTES))
  if num <= 0:
    return 0, True
  if np.array_equal(head_ids(counts, num), np.arange(num)):
    return int(num), True
  bits = dim * FLOAT_BYTES * 8 + bits_per_code(vocab)  # a row and its id
  num = min(vocab - 1, head_bytes * 8 // bits)
  while num > 0 and math.ceil(num * bits / 8) > head_bytes:
    num -= 1
  return int(num), bool(num == 0 or np.array_equal(head_ids(counts, num), np.arange(num)))


def head_row_bytes(num: int, prefix: bool, vocab: int, dim: int) -> int:
  """Bit-packed bytes of ``num`` head rows and, unless ``prefix``, their ids."""
  return num * dim * FLOAT_BYTES + (0 if prefix else math.ceil(num * bits_per_code(vocab) / 8))


def plan(config, feature_map, fraction: float) -> tuple[list, tuple[int, int]]:
  """``([(H, prefix)] per compressed field, (M, K) of every tail)`` at head ``fraction``."""
  fields = base.compressed_fields(config, feature_map)
  dim = config.model.embed_dim
  total = budget.budget_bytes(config, feature_map)
  vocab_total = sum(f.vocab_size for f in fields)
  shares = [total * f.vocab_size // vocab_total for f in fields]  # as CCE and ROBE-Z share
  heads = []
  for spec, share in zip(fields, shares, strict=True):
    counts = spec.counts if spec.counts is not None else np.ones(spec.vocab_size, np.int64)
    heads.append(plan_head(np.asarray(counts), dim, int(fraction * share)))
  if fraction == 0 and config.compress.target_ratio <= 0:
    return heads, (config.quantize.num_subspaces, config.quantize.codebook_size)
  spent = sum(
    head_row_bytes(h, p, f.vocab_size, dim) for (h, p), f in zip(heads, fields, strict=True)
  )
  tails = [f.vocab_size - h for (h, _), f in zip(heads, fields, strict=True)]
  return heads, budget.plan_pq(tails, dim, total - spent)


def build_field(config, spec, path: str, head: tuple[int, bool], mk, fraction: float, ctx, index):
  """The `PQHeadArtifact` of one field: stage A's head rows, the PQ of its tail rows."""
  dim = config.model.embed_dim
  table, bias = artifacts.load_stage_a_table(path, spec, dim)
  counts = artifacts.load_stage_a_counts(path, spec)
  num, prefix = head
  ids = np.arange(num) if prefix else head_ids(counts, num)
  tail = np.setdiff1d(np.arange(spec.vocab_size), ids, assume_unique=True)
  q = config.quantize.copy_and_resolve_references()
  with q.unlocked():
    q.num_subspaces, q.codebook_size = mk
  settings = quantizer.QuantizeSettings.from_config(q)
  key = jax.random.fold_in(jax.random.key(config.quantize.seed), index)
  progress = ctx.progress(spec.name, settings.epochs) if ctx.progress else None
  start = time.time()
  pq = quantizer.quantize_table(
    key,
    table[tail],
    counts[tail],
    settings,
    bias=None if bias is None else bias[tail],
    progress=progress,
    name=spec.name,
    mesh=ctx.mesh,
  )
  return PQHeadArtifact(
    head_rows=table[ids],
    head_ids=None if prefix else ids,
    codes=pq.codes,
    codebooks=pq.codebooks,
    head_first_order=None if bias is None else bias[ids],
    first_order=pq.first_order,
    name=spec.name,
    head_fraction=fraction,
    stats=scalars(pq.stats) | {"seconds": time.time() - start, "variant": pq.variant},
  )


def scalars(stats: dict) -> dict:
  """The JSON scalars of the tail's PQ stats (errors, epochs, stop reason: the report's columns)."""
  return {k: v for k, v in stats.items() if isinstance(v, (int, float, str))}


def build_at(config, feature_map, ctx: base.StageB, fraction: float) -> dict:
  """``{field: PQHeadArtifact}`` at one head fraction (nothing written)."""
  heads, mk = plan(config, feature_map, fraction)
  out = {}
  for spec, head in zip(base.compressed_fields(config, feature_map), heads, strict=True):
    index = feature_map.index(spec.name)
    art = build_field(config, spec, ctx.table_path(spec.name), head, mk, fraction, ctx, index)
    logging.info("compress: pq_head field %s, %s", spec.name, art.knobs())
    out[spec.name] = art
  return out


def build(config, feature_map, ctx: base.StageB) -> dict[str, PQHeadArtifact]:
  """Stage B: the saved artifacts, or every head fraction built and the best on validation kept."""
  fractions = head_fractions(config)
  fields = base.compressed_fields(config, feature_map)
  if all(os.path.exists(base.field_path(METHOD, ctx, f.name)) for f in fields):
    return base.load_each(METHOD, config, feature_map, ctx)
  best, scores = selection.best_on_valid(
    fractions,
    lambda fraction: build_at(config, feature_map, ctx, fraction),
    ctx,
    str,
    "pq_head head_fraction",
  )
  return selection.save_kept(METHOD, ctx, best, "head_selection", scores)


METHOD = base.Method(
  "pq_head", PQHeadArtifact, build, config_keys=("target_ratio", "head_fraction")
)
