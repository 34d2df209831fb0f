"""`EncodedDataset`: the encoded splits of one dataset plus its `FeatureMap`."""

from __future__ import annotations

import dataclasses

import numpy as np

from mec_jax.data.schema import SPLITS, FeatureMap


@dataclasses.dataclass
class EncodedDataset:
  """What `mec_jax.data.load_dataset` returns.

  Attributes:
    feature_map: fields, vocab sizes and train counts.
    splits: ``{"train", "valid", "test"} -> {"ids": int32 [N, F], "values": [N, F],
      "label": float32 [N]}`` (see `mec_jax.data.schema`); ``values`` is a `FieldValues` that
      stores the numeric fields only and gives dense float32 rows on indexing. Memory-mapped
      read-only arrays when they come from the cache.
    stats: per numeric field, the train statistics its encoding used (``mean``/``std`` or
      bucket ``edges``).
    cache_path: the cache entry the arrays live in (``None`` when caching was off).
  """

  feature_map: FeatureMap
  splits: dict[str, dict[str, np.ndarray]]
  stats: dict = dataclasses.field(default_factory=dict)
  cache_path: str | None = None

  def num_rows(self, split: str) -> int:
    return len(self.splits[split]["label"])

  def label_rate(self, split: str) -> float:
    label = self.splits[split]["label"]
    return float(np.mean(label)) if len(label) else float("nan")

  def summary(self, min_vocab: int = 0) -> str:
    """Rows and label rate per split, then one line per field (kind, vocab, compressed or not).

    Args:
      min_vocab: fields with a categorical vocab of at least this size are marked as the ones
        stage B compresses (0 marks none).
    """
    fm = self.feature_map
    lines = [f"dataset {fm.dataset}: {fm.num_fields} fields, total vocab {sum(fm.vocab_sizes):,}"]
    for split in SPLITS:
      lines.append(
        f"  {split:<5} {self.num_rows(split):>12,} rows   label rate {self.label_rate(split):.4f}"
      )
    lines.append(fm.summary(min_vocab or None))
    compressed = [fm.names[i] for i in fm.fields_to_compress(min_vocab)] if min_vocab else []
    lines.append(f"fields with vocab >= {min_vocab}: {compressed if compressed else 'none'}")
    return "\n".join(lines)
