"""The protocol every compression method's artifact implements, and what a method is.

A **method** (`Method`, one per `compress.method` value, in `mec_jax.methods.registry`) turns
the stage-A tables into one **artifact** per compressed field (stage B). The pipeline, the memory
accounting, the report and the export ask the artifact (`Artifact`) for everything they need,
so adding a method is one module and one registry line (docs/methods.md).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from absl import logging
from flax import nnx

from mec_jax.errors import ArtifactError


@runtime_checkable
class Artifact(Protocol):
  """Stage B's product for one field, and stage C's once its layer has trained.

  Attributes:
    method: the `compress.method` that makes it.
    name: field name.
    vocab_size: ids V of the field it replaces.
    dim: size of an embedded row.
    trainable_params: substrings of the parameter paths of its layer that stage C trains at
      ``finetune.codebook_learning_rate`` (every other weight of a warm start is frozen).
  """

  method: str
  name: str
  trainable_params: ClassVar[tuple[str, ...]]

  @property
  def vocab_size(self) -> int: ...

  @property
  def dim(self) -> int: ...

  def nbytes(self, packed: bool = True) -> int:
    """Embedding bytes (first-order weights excluded), bit-packed or as stored."""

  def first_order_nbytes(self) -> int:
    """Bytes of the field's first-order weights when the backbone has first-order terms."""

  def knobs(self) -> dict:
    """JSON-able settings for ``report.json`` ``compressed_fields`` (sizes, seeds, stats)."""

  def to_layer(self, *, rngs: nnx.Rngs, first_order: bool = True) -> nnx.Module:
    """The `mec_jax.layers.base.Table` that embeds the field in stage C."""

  def with_layer(self, layer: nnx.Module, **stats) -> Artifact:
    """This artifact with the (trained) weights of ``layer``, made by `to_layer`."""

  def save(self, path: str) -> None:
    """Writes one ``.npz`` file atomically."""

  @classmethod
  def load(cls, path: str) -> Artifact:
    """Reads what `save` wrote (ArtifactError when it is damaged or of another method)."""


@dataclasses.dataclass(frozen=True)
class StageB:
  """Where stage B reads and writes, and how (built by the pipeline).

  Attributes:
    table_path: field name -> stage A's ``.npz`` table of the field.
    quantize_dir: directory of the artifacts (`Method.artifact_path`).
    writes: whether this process writes artifacts (process 0 of a multi-process run).
    mesh: devices a method may spread its work over (None: all local devices).
    progress: ``(field, epochs) -> callback or None`` for methods that train.
    evaluate: ``{field: Artifact} -> {"valid_auc", "valid_logloss", "valid_score"}`` of the
      swap-in model (stage-A weights with these tables) for methods that select on validation
      (``valid_score``: ``train.monitor``); None without a stage-A model.
  """

  table_path: Callable[[str], str]
  quantize_dir: str
  writes: bool = True
  mesh: Any = None
  progress: Callable[[str, int], Callable | None] | None = None
  evaluate: Callable[[dict], dict] | None = None


@dataclasses.dataclass(frozen=True)
class Method:
  """One `compress.method`: its artifact type and its stage B.

  Attributes:
    name: the `compress.method` value.
    artifact: the `Artifact` class (its ``load`` reads the files ``build`` writes).
    build: ``(config, feature_map, StageB) -> {field: Artifact}``, reusing saved artifacts.
    suffix: file name suffix in ``quantize/`` (None: ``.<name>``).
    config_keys: the ``compress.*`` keys (names under ``compress``) its stage B reads besides
      ``compress.method``: its stages' settings records bind these alone (`mec_jax.workdir`),
      so a key only another method reads can change without refusing its work directories.
      None: every ``compress.*`` key (a method that does not declare its keys).
  """

  name: str
  artifact: type
  build: Callable[..., dict]
  suffix: str | None = None
  config_keys: tuple[str, ...] | None = None

  @property
  def trainable_params(self) -> tuple[str, ...]:
    return tuple(self.artifact.trainable_params)

  def artifact_path(self, quantize_dir: str, field_file: str) -> str:
    """``quantize/<field><suffix>.npz`` for the field whose stage-A file is ``field_file``."""
    stem = field_file[: -len(".npz")] if field_file.endswith(".npz") else field_file
    suffix = f".{self.name}" if self.suffix is None else self.suffix
    return os.path.join(quantize_dir, stem + suffix + ".npz")

  def load(self, path: str, spec, dim: int) -> Artifact:
    """The artifact at ``path`` for field ``spec`` (a `FieldSpec`), checked against it.

    Raises:
      ArtifactError: a missing or damaged file, or a table for another vocabulary or dimension.
    """
    art = self.artifact.load(path)
    if art.method != self.name:
      raise ArtifactError(f"{path}: holds method {art.method!r}, expected {self.name!r}")
    if art.vocab_size != spec.vocab_size or art.dim != dim:
      raise ArtifactError(
        f"{path}: compressed table of {art.vocab_size} ids x dim {art.dim}; field "
        f"{spec.name!r} has {spec.vocab_size} ids and model.embed_dim is {dim}; delete it to "
        "recompute"
      )
    return art


def compressed_fields(config, feature_map) -> list:
  """`FieldSpec`s of the fields stage B compresses (vocabulary >= ``quantize.min_vocab``)."""
  return [feature_map.fields[i] for i in feature_map.fields_to_compress(config.quantize.min_vocab)]


def field_path(method: Method, ctx: StageB, field: str) -> str:
  """The artifact file of ``field`` under ``ctx.quantize_dir``."""
  return method.artifact_path(ctx.quantize_dir, os.path.basename(ctx.table_path(field)))


def build_each(method: Method, config, feature_map, ctx: StageB, make) -> dict:
  """Stage B field by field: a saved artifact is loaded, a missing one made and saved.

  Args:
    method: the method whose artifacts these are.
    config: the run's config.
    feature_map: the dataset's `FeatureMap`.
    ctx: where to read and write.
    make: ``(position among the compressed fields, FieldSpec) -> Artifact``.

  Returns:
    ``{field name: Artifact}`` in field order.
  """
  out = {}
  for position, spec in enumerate(compressed_fields(config, feature_map)):
    path = field_path(method, ctx, spec.name)
    if os.path.exists(path):
      out[spec.name] = method.load(path, spec, config.model.embed_dim)
      continue
    art = make(position, spec)
    if ctx.writes:
      art.save(path)
    out[spec.name] = art
  return out


def build_from_stage_a(method: Method, config, feature_map, ctx: StageB, make_field) -> dict:
  """`build_each` for methods that start from stage A's table of each field (the baselines).

  Args:
    method, config, feature_map, ctx: as for `build_each`.
    make_field: ``(position, FieldSpec, table [V, d], bias [V] or None, counts [V], seed) ->
      Artifact``; ``seed`` is ``compress.hash_seed * 1000 + the field's index``.
  """

  def make(position, spec):
    table, bias, counts = read_stage_a(ctx.table_path(spec.name), spec)
    seed = config.compress.hash_seed * 1000 + feature_map.index(spec.name)
    art = make_field(position, spec, table, bias, counts, seed)
    logging.info("compress: %s field %s, %s", method.name, spec.name, art.knobs())
    return art

  return build_each(method, config, feature_map, ctx, make)


def load_each(method: Method, config, feature_map, ctx: StageB) -> dict:
  """The saved artifacts of every compressed field (ArtifactError when one is missing)."""
  out = {}
  for spec in compressed_fields(config, feature_map):
    path = field_path(method, ctx, spec.name)
    if not os.path.exists(path):
      raise ArtifactError(f"{path} is missing; run --config.stage=quantize first")
    out[spec.name] = method.load(path, spec, config.model.embed_dim)
  return out


def read_stage_a(path: str, spec) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
  """``(table [V, d], bias [V] or None, counts [V] >= 1)`` of field ``spec`` from stage A."""
  if not os.path.exists(path):
    raise ArtifactError(f"{path}: stage A's table of field {spec.name!r} is missing; run pretrain")
  with np.load(path) as arrays:
    bias = arrays["bias"] if "bias" in arrays else None
    table = arrays["embedding"]
  counts = spec.counts if spec.counts is not None else np.ones(spec.vocab_size, np.int64)
  return table, bias, np.maximum(np.asarray(counts, np.float64), 1.0)
