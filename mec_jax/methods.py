"""Stage B of every compression method (`compress.method`) and the byte budgets they share.

``pq`` is `pipeline.run_quantize` (MEC and its variants, `quantize.variant`); this module sizes it
for a budget (`pq_config`) and builds the baselines from the stage-A tables and train counts:

* ``hash``: the hashing trick (`mec_jax.layers.hashed`), B rows per field;
* ``qr``: quotient-remainder embeddings (`mec_jax.layers.qr`), c collisions per field;
* ``int8`` / ``int4``: row-wise post-training quantization (`mec_jax.layers.rowwise`).

**Budgets.** With ``compress.target_ratio = r`` the embedding bytes of the compressed fields are at
most ``full / r`` (bit-packed, as `mec_jax.memory` counts them): hash gives every field ``V_f / r``
rows; QR fills each field's share (fields whose ``2 sqrt(V)`` floor exceeds it get the floor, the
rest is shared out again); PQ takes the (M, K) with the most bytes within the budget (see
`plan_pq`). With ``r = 0`` PQ keeps ``quantize.*`` and hash/QR take the bytes that PQ setting uses.
int8/int4 have fixed ratios and ignore ``r``.

**Warm start.** With ``compress.init_tables = "stage_a"`` a hash bucket starts from the
count-weighted mean of the stage-A rows hashed into it, and QR's two tables from a count-weighted
alternating least-squares fit of the stage-A table (`mec_jax.compression.group_fit`), so the
baselines get the same swap-in and warm-started stage C as PQ; ``"random"`` starts them like a
fresh `Embed` (the usual from-scratch baseline, with ``finetune.init_from_pretrain=False``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
from absl import logging
from flax import nnx

from mec_jax.compression import group_fit
from mec_jax.compression.rowwise import SCALE_DTYPES, pack_int4, quantize_rows, unpack_int4
from mec_jax.compression.table import CompressedTable
from mec_jax.errors import ArtifactError, BudgetError, ConfigError
from mec_jax.layers.codebook import CodebookEmbed
from mec_jax.layers.hashed import HASH_FUNCTIONS, HashedTable
from mec_jax.layers.qr import COMBINES, QRTable
from mec_jax.layers.rowwise import RowwiseTable
from mec_jax.memory import FieldMemory

METHODS = ("pq", "hash", "qr", "int8", "int4")
INIT_TABLES = ("stage_a", "random")
# Parameter names of each method's tables: stage C trains them at finetune.codebook_learning_rate.
TRAINABLE_PARAMS = {
  "pq": ("codebooks", "first_order_codebook"),
  "hash": ("hashed_rows", "hashed_first_order"),
  "qr": ("quotient_rows", "remainder_rows", "qr_first_order"),
  "int8": ("row_scale", "row_offset"),
  "int4": ("row_scale", "row_offset"),
}
_ARTIFACTS = {"hash": HashedTable, "qr": QRTable, "int8": RowwiseTable, "int4": RowwiseTable}
_INIT_STD = 1e-4  # as a fresh `Embed`


def validate(config) -> None:
  """Raises ConfigError naming the ``compress.*`` key that is out of range."""
  c = config.compress
  for key, value, choices in (
    ("method", c.method, METHODS),
    ("init_tables", c.init_tables, INIT_TABLES),
    ("hash_function", c.hash_function, HASH_FUNCTIONS),
    ("qr_combine", c.qr_combine, COMBINES),
    ("scale_dtype", c.scale_dtype, SCALE_DTYPES),
  ):
    if value not in choices:
      raise ConfigError(f"config.compress.{key}={value!r}; expected one of {choices}")
  if not c.target_ratio >= 0:
    raise ConfigError(f"config.compress.target_ratio={c.target_ratio}; expected >= 0 (0: none)")


# --- budgets --------------------------------------------------------------------------------------


def _compressed_fields(config, feature_map) -> list:
  return [feature_map.fields[i] for i in feature_map.fields_to_compress(config.quantize.min_vocab)]


def pq_bytes(vocab_sizes: list[int], dim: int, num_subspaces: int, codebook_size: int) -> int:
  """Bit-packed embedding bytes of PQ with (M, K) over fields of these vocabularies."""
  mems = [FieldMemory("", v, dim, num_subspaces, codebook_size) for v in vocab_sizes]
  return sum(m.compressed_bytes(packed=True) for m in mems)


def budget_bytes(config, feature_map) -> int:
  """Embedding bytes the compressed fields may take under ``compress.target_ratio``."""
  vocabs = [f.vocab_size for f in _compressed_fields(config, feature_map)]
  dim = config.model.embed_dim
  if config.compress.target_ratio > 0:
    return int(sum(vocabs) * dim * 4 / config.compress.target_ratio)
  q = config.quantize
  return pq_bytes(vocabs, dim, q.num_subspaces, q.codebook_size)


def plan_pq(vocab_sizes: list[int], dim: int, budget: int) -> tuple[int, int]:
  """``(M, K)`` using the most bytes within ``budget`` (ties: larger K).

  Candidates: M divides ``dim`` with sub-dimension >= 4 (>= 1 for tiny dims), K a power of two
  in ``[2, 256]`` (uint8 codes).
  """
  min_sub = 4 if dim >= 8 else 1
  best = None
  for m in (m for m in range(1, dim + 1) if dim % m == 0 and dim // m >= min_sub):
    for k in (2**b for b in range(1, 9)):
      size = pq_bytes(vocab_sizes, dim, m, k)
      if size <= budget and (best is None or (size, k) > best[0]):
        best = ((size, k), (m, k))
  if best is None:
    raise BudgetError(
      f"config.compress.target_ratio: a budget of {budget} bytes is below the smallest PQ "
      f"setting for vocabularies {vocab_sizes} at dim {dim}"
    )
  return best[1]


def pq_config(config, feature_map):
  """``config`` with ``quantize.num_subspaces/codebook_size`` from the budget (when one is set)."""
  if config.compress.target_ratio <= 0:
    return config
  vocabs = [f.vocab_size for f in _compressed_fields(config, feature_map)]
  m, k = plan_pq(vocabs, config.model.embed_dim, budget_bytes(config, feature_map))
  out = config.copy_and_resolve_references()
  with out.unlocked():
    out.quantize.num_subspaces, out.quantize.codebook_size = m, k
  logging.info("compress: pq at target ratio %g -> M=%d, K=%d", config.compress.target_ratio, m, k)
  return out


def _qr_min_rows(vocab: int) -> tuple[int, int]:
  """``(fewest rows ceil(V/c) + c over c, that c)``."""
  root = max(1, math.isqrt(vocab))
  return min((math.ceil(vocab / c) + c, c) for c in range(max(1, root - 1), root + 3))


def plan_qr(vocab_sizes: list[int], budget_rows: int) -> list[int]:
  """Collisions ``c_f`` per field with ``sum_f ceil(V_f / c_f) + c_f <= budget_rows``.

  Rows are shared in proportion to ``V_f``; a field whose share is below its floor gets the
  floor and the others share the rest (water filling). Each field then takes the smallest c
  that fits its share.
  """
  floors = [_qr_min_rows(v) for v in vocab_sizes]
  if sum(f[0] for f in floors) > budget_rows:
    raise BudgetError(
      f"config.compress.target_ratio: QR needs at least {sum(f[0] for f in floors)} rows for "
      f"vocabularies {vocab_sizes} (2 sqrt(V) each), the budget allows {budget_rows}"
    )
  fixed: dict[int, int] = {}
  while True:
    free = [i for i in range(len(vocab_sizes)) if i not in fixed]
    left = budget_rows - sum(fixed.values())
    total = sum(vocab_sizes[i] for i in free)
    shares = {i: left * vocab_sizes[i] / total for i in free}
    short = {i: floors[i][0] for i in free if shares[i] < floors[i][0]}
    if not short:
      break
    fixed |= short
  out = []
  for i, vocab in enumerate(vocab_sizes):
    share = fixed.get(i, shares.get(i, 0))
    low, high = 1, floors[i][1]  # rows(c) decreases on [1, c_min]: smallest c within the share
    while low < high:
      mid = (low + high) // 2
      low, high = (low, mid) if math.ceil(vocab / mid) + mid <= share else (mid + 1, high)
    out.append(low)
  return out


# --- building the tables --------------------------------------------------------------------------


def artifact_path(quantize_dir: str, field_file: str, method: str) -> str:
  """``quantize/<field>.npz`` for pq (as before), ``quantize/<field>.<method>.npz`` otherwise."""
  stem = field_file[: -len(".npz")] if field_file.endswith(".npz") else field_file
  return os.path.join(quantize_dir, stem + ("" if method == "pq" else f".{method}") + ".npz")


def _stage_a(path: str, spec) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
  if not os.path.exists(path):
    raise ArtifactError(f"{path}: stage A's table of field {spec.name!r} is missing; run pretrain")
  with np.load(path) as arrays:
    bias = arrays["bias"] if "bias" in arrays else None
    table = arrays["embedding"]
  counts = spec.counts if spec.counts is not None else np.ones(spec.vocab_size, np.int64)
  return table, bias, np.maximum(np.asarray(counts, np.float64), 1.0)


def build_field(method, spec, table, bias, counts, config, *, rows=0, collisions=0, seed=0):
  """The ``method`` artifact of one field from its stage-A ``table [V, d]``, ``bias``, counts."""
  c = config.compress
  random_init = c.init_tables == "random"
  rng = np.random.default_rng(seed)
  if method in ("int8", "int4"):
    values, scale, offset = (
      np.asarray(a) for a in quantize_rows(table, int(method[3:]), c.scale_dtype)
    )
    return RowwiseTable(values, scale, offset, bias, int(method[3:]), c.scale_dtype, spec.name)
  dim = table.shape[1]
  if method == "hash":
    art = HashedTable(
      np.zeros((rows, dim), np.float32),
      None,
      spec.vocab_size,
      c.hash_seed,
      c.hash_function,
      spec.name,
    )
    buckets = art.buckets()
    if random_init:
      art.rows = (_INIT_STD * rng.standard_normal((rows, dim))).astype(np.float32)
      art.first_order = None if bias is None else np.zeros(rows, np.float32)
    else:
      art.rows = group_fit.group_mean(table, buckets, counts, rows)
      art.first_order = (
        None if bias is None else group_fit.group_mean(bias[:, None], buckets, counts, rows)[:, 0]
      )
    return art
  if method == "qr":
    nq = math.ceil(spec.vocab_size / collisions)
    ids = np.arange(spec.vocab_size)
    qi, ri = ids // collisions, ids % collisions
    if random_init:
      quotient = (_INIT_STD * rng.standard_normal((nq, dim))).astype(np.float32)
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
    return QRTable(quotient, remainder, fo, spec.vocab_size, c.qr_combine, spec.name)
  raise ConfigError(f"config.compress.method={method!r}: not a baseline of mec_jax.methods")


def build_tables(config, feature_map, table_path, quantize_dir: str) -> dict:
  """Stage B of a baseline: one artifact per compressed field, saved and reused.

  Args:
    config: the run's config (``compress.*``, ``quantize.min_vocab``, ``model.embed_dim``).
    feature_map: the dataset's `FeatureMap` (vocabularies, train counts).
    table_path: ``field name -> path`` of the stage-A ``.npz`` table.
    quantize_dir: directory of the artifacts (`artifact_path`).

  Returns:
    ``{field name: HashedTable | QRTable | RowwiseTable}``.
  """
  method = config.compress.method
  fields = _compressed_fields(config, feature_map)
  dim = config.model.embed_dim
  rows, collisions = [0] * len(fields), [0] * len(fields)
  if method == "hash":
    ratio = config.compress.target_ratio
    if ratio <= 0:
      ratio = sum(f.vocab_size for f in fields) * dim * 4 / budget_bytes(config, feature_map)
    rows = [max(1, int(f.vocab_size / ratio)) for f in fields]
  elif method == "qr":
    collisions = plan_qr(
      [f.vocab_size for f in fields], budget_bytes(config, feature_map) // (4 * dim)
    )
  out = {}
  for i, spec in enumerate(fields):
    path = artifact_path(quantize_dir, os.path.basename(table_path(spec.name)), method)
    if os.path.exists(path):
      out[spec.name] = load_artifact(path, method)
      continue
    table, bias, counts = _stage_a(table_path(spec.name), spec)
    seed = config.compress.hash_seed * 1000 + feature_map.index(spec.name)
    art = build_field(
      method, spec, table, bias, counts, config, rows=rows[i], collisions=collisions[i], seed=seed
    )
    save_artifact(path, art)
    out[spec.name] = art
    logging.info("compress: %s field %s, %s", method, spec.name, art.knobs())
  return out


def load_tables(config, feature_map, table_path, quantize_dir: str) -> dict:
  """The saved artifacts of `build_tables` (ArtifactError when one is missing)."""
  method = config.compress.method
  out = {}
  for spec in _compressed_fields(config, feature_map):
    path = artifact_path(quantize_dir, os.path.basename(table_path(spec.name)), method)
    if not os.path.exists(path):
      raise ArtifactError(f"{path} is missing; run --config.stage=quantize first")
    out[spec.name] = load_artifact(path, method)
  return out


def make_layer(table, *, rngs: nnx.Rngs):
  """The `Table` layer of a stage-B artifact of any method."""
  if isinstance(table, CompressedTable):
    return CodebookEmbed.from_table(table, rngs=rngs)
  return table.to_layer(rngs=rngs)


# --- artifact files -------------------------------------------------------------------------------


def save_artifact(path: str, art) -> None:
  """Writes a baseline artifact as one ``.npz`` (arrays + JSON meta), atomically."""
  arrays, meta = {}, {"method": art.method}
  for field in dataclasses.fields(art):
    value = getattr(art, field.name)
    if isinstance(value, np.ndarray):
      arrays[field.name] = value
    elif value is not None:
      meta[field.name] = value
  if isinstance(art, RowwiseTable) and art.bits == 4:
    arrays["values"] = pack_int4(art.values)  # two values per byte on disk too
    meta["dim"] = art.dim
  arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def load_artifact(path: str, method: str):
  """Reads what `save_artifact` wrote; ArtifactError when it holds another method."""
  with np.load(path) as data:
    meta = json.loads(bytes(data["meta"]).decode())
    arrays = {k: data[k] for k in data.files if k != "meta"}
  stored = meta.pop("method")
  if stored != method:
    raise ArtifactError(f"{path}: holds method {stored!r}, expected {method!r}")
  if method == "int4":
    arrays["values"] = unpack_int4(arrays["values"], meta.pop("dim"))
  cls = _ARTIFACTS[method]
  kwargs = {f.name: None for f in dataclasses.fields(cls)} | meta | arrays
  return cls(**kwargs)
