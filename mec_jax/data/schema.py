"""Schema of an encoded dataset: one `FieldSpec` per field, gathered in a `FeatureMap`.

Every encoded split is a dict of three arrays (the batch format used everywhere in mec_jax):

  * ``ids``    int32   ``[num_rows, num_fields]`` -- per-field value id in ``[0, vocab_size)``;
    numeric fields always hold id 0 (their "table" has a single row).
  * ``values`` float32 ``[num_rows, num_fields]`` -- 1.0 for categorical fields, the normalized
    value for numeric fields. An embedding module returns ``table_f[ids[:, f]] * values[:, f]``.
    Encoded splits hold a `mec_jax.data.values.FieldValues`, which stores the numeric columns
    only and gives dense rows on indexing; any ``[num_rows, num_fields]`` array works too.
  * ``label``  float32 ``[num_rows]`` -- 0.0 / 1.0.

The schema is saved as JSON next to the encoded arrays; train counts go to a ``.npz`` beside it
because they can have millions of entries.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np

CATEGORICAL = "categorical"
NUMERIC = "numeric"
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class FieldSpec:
  """One input field.

  Attributes:
    name: column name in the source data.
    kind: ``"categorical"`` or ``"numeric"``.
    vocab_size: number of ids, OOV included (1 for numeric fields).
    oov_id: id that rare and unseen values map to (``vocab_size - 1`` for categorical fields,
      -1 for numeric fields, which have no OOV).
    counts: int64 ``[vocab_size]`` occurrences of each id in the **train split only**
      (the OOV id counts the rare train values folded into it). Drives popularity weights.
  """

  name: str
  kind: str
  vocab_size: int
  oov_id: int = -1
  counts: np.ndarray | None = None

  def __post_init__(self):
    if self.kind not in (CATEGORICAL, NUMERIC):
      raise ValueError(
        f"field {self.name!r}: kind must be {CATEGORICAL!r} or {NUMERIC!r}, got {self.kind!r}"
      )
    if self.vocab_size < 1:
      raise ValueError(f"field {self.name!r}: vocab_size must be >= 1, got {self.vocab_size}")
    if self.counts is not None:
      self.counts = np.asarray(self.counts, dtype=np.int64)
      if self.counts.shape != (self.vocab_size,):
        raise ValueError(
          f"field {self.name!r}: counts has shape {self.counts.shape}, "
          f"expected ({self.vocab_size},)"
        )

  @property
  def is_categorical(self) -> bool:
    return self.kind == CATEGORICAL


@dataclasses.dataclass
class FeatureMap:
  """All fields of a dataset, in column order of the encoded ``ids``/``values`` arrays."""

  dataset: str
  fields: list[FieldSpec]

  @property
  def num_fields(self) -> int:
    return len(self.fields)

  @property
  def vocab_sizes(self) -> list[int]:
    return [f.vocab_size for f in self.fields]

  @property
  def names(self) -> list[str]:
    return [f.name for f in self.fields]

  def index(self, name: str) -> int:
    try:
      return self.names.index(name)
    except ValueError:
      raise ValueError(f"no field named {name!r}; fields are {self.names}") from None

  def numeric_indices(self) -> list[int]:
    """Indices of the numeric fields: the columns an encoded split stores values for."""
    return [i for i, f in enumerate(self.fields) if not f.is_categorical]

  def fields_to_compress(self, min_vocab: int) -> list[int]:
    """Indices of categorical fields whose vocab is at least ``min_vocab``."""
    return [i for i, f in enumerate(self.fields) if f.is_categorical and f.vocab_size >= min_vocab]

  def save(self, directory: str) -> None:
    """Writes ``feature_map.json`` and ``counts.npz`` into ``directory`` atomically."""
    os.makedirs(directory, exist_ok=True)
    meta = {
      "dataset": self.dataset,
      "fields": [
        {"name": f.name, "kind": f.kind, "vocab_size": f.vocab_size, "oov_id": f.oov_id}
        for f in self.fields
      ],
    }
    counts = {f.name: f.counts for f in self.fields if f.counts is not None}
    _atomic_write_npz(os.path.join(directory, "counts.npz"), counts)
    tmp = os.path.join(directory, "feature_map.json.tmp")
    with open(tmp, "w") as fh:
      json.dump(meta, fh, indent=2)
    os.replace(tmp, os.path.join(directory, "feature_map.json"))

  @classmethod
  def load(cls, directory: str) -> FeatureMap:
    path = os.path.join(directory, "feature_map.json")
    if not os.path.exists(path):
      raise ValueError(f"{path}: no feature map here (expected a directory written by save())")
    with open(path) as fh:
      meta = json.load(fh)
    counts_path = os.path.join(directory, "counts.npz")
    counts = dict(np.load(counts_path)) if os.path.exists(counts_path) else {}
    fields = [FieldSpec(**f, counts=counts.get(f["name"])) for f in meta["fields"]]
    return cls(dataset=meta["dataset"], fields=fields)

  def summary(self, min_vocab: int | None = None) -> str:
    lines = [f"{'field':<24} {'kind':<12} {'vocab':>10}"]
    compress = set(self.fields_to_compress(min_vocab)) if min_vocab else set()
    for i, f in enumerate(self.fields):
      mark = "  <- compressed" if i in compress else ""
      lines.append(f"{f.name:<24} {f.kind:<12} {f.vocab_size:>10}{mark}")
    return "\n".join(lines)


def _atomic_write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def check_split(split: dict[str, np.ndarray], feature_map: FeatureMap, name: str = "split") -> None:
  """Validates an encoded split against its feature map (shapes, dtypes, id ranges)."""
  for key in ("ids", "values", "label"):
    if key not in split:
      raise ValueError(f"{name}: missing array {key!r}; expected ids, values, label")
  ids, values, label = split["ids"], split["values"], split["label"]
  n, f = len(label), feature_map.num_fields
  if ids.shape != (n, f) or values.shape != (n, f):
    raise ValueError(
      f"{name}: ids {ids.shape} / values {values.shape} do not match ({n}, {f}) "
      f"(rows from label, fields from the feature map)"
    )
  if n:
    high = np.asarray(feature_map.vocab_sizes)
    bad = (ids < 0) | (ids >= high[None, :])
    if bad.any():
      row, col = np.argwhere(bad)[0]
      raise ValueError(
        f"{name}: id {ids[row, col]} at row {row}, field {feature_map.fields[col].name!r} is "
        f"outside [0, {high[col]})"
      )


def concat_splits(splits: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.concatenate([s[k] for s in splits]) for k in ("ids", "values", "label")}
