"""Checks a run's config against its dataset and work directory before any long work.

`preflight` runs once, right after the data loaded (or came from the cache) and before stage A
trains: everything that can be known up front stops here with one `ConfigError`/`DataError`
that names the config key, field or split, instead of after an epoch of training or after
stage A (an empty split, a valid or test split of one class, a batch larger than the train
split, ``quantize.codebook_size`` above a field's ids, ``quantize.min_vocab`` that leaves nothing
to compress, ids outside their tables, a single stage asked for before the stages it needs).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from mec_jax import methods
from mec_jax.data import SPLITS, EncodedDataset
from mec_jax.data.registry import get_reader
from mec_jax.errors import ConfigError, DataError
from mec_jax.layers.base import check_ids
from mec_jax.train.result import result_path

# The stages whose output a single --config.stage needs (report needs stage A at least).
_NEEDS = {
  "quantize": ("pretrain",),
  "finetune": ("pretrain", "quantize"),
  "export": ("pretrain", "quantize"),
  "report": ("pretrain",),
}


def preflight(config, dataset: EncodedDataset, workdir) -> str | None:
  """Raises on any setting that cannot work with ``dataset`` and ``workdir``.

  Args:
    config: the root config.
    dataset: the loaded dataset.
    workdir: the run's `mec_jax.workdir.Workdir` (paths of stage outputs).

  Returns:
    None, or (with ``quantize.allow_nothing_to_compress``) the sentence saying why no field
    is compressed, for the report.

  Raises:
    DataError: an empty split, labels outside [0, 1], a valid or test split of one class (one
      row, say), ids outside their field's table.
    ConfigError: naming the key: batch size vs split rows and devices, codebook size vs a
      field's ids, nothing to compress, a stage run before the stages it needs.
  """
  check_splits(config, dataset)
  fm = dataset.feature_map
  note = nothing_to_compress(config, fm)
  if note and config.stage in ("all", "quantize", "finetune"):
    if not config.quantize.get("allow_nothing_to_compress", False):
      raise ConfigError(
        f"{note}; lower config.quantize.min_vocab, or set "
        "config.quantize.allow_nothing_to_compress=True to train and report the full model only"
      )
  codebook_size = config.quantize.codebook_size
  for index in fm.fields_to_compress(config.quantize.min_vocab):
    spec = fm.fields[index]
    if codebook_size > spec.vocab_size:
      raise ConfigError(
        f"config.quantize.codebook_size={codebook_size} exceeds the {spec.vocab_size} ids "
        f"(distinct rows) of field {spec.name!r}; lower quantize.codebook_size to at most "
        f"{spec.vocab_size}, or raise quantize.min_vocab above {spec.vocab_size} to leave the "
        "field uncompressed"
      )
  check_stage_inputs(config, dataset, workdir, compress=not note)
  return note


def check_splits(config, dataset: EncodedDataset) -> None:
  """Every split has rows, labels in [0, 1], ids in range; valid and test have both classes;
  a train batch fits the train split."""
  rows = {split: dataset.num_rows(split) for split in SPLITS}
  for split, count in rows.items():
    if count == 0:
      hint = ""
      if "split_fractions" in get_reader(config.data.name).CONFIG_KEYS:
        hint = f" (data.split_fractions={tuple(config.data.split_fractions)})"
      raise DataError(
        f"data split {split!r} of {config.data.name} is empty{hint}; rows per split: {rows}. "
        "Every split needs rows"
      )
  fm = dataset.feature_map
  for split in SPLITS:
    arrays = dataset.splits[split]
    check_ids(arrays["ids"], fm.vocab_sizes, f"data split {split!r}", fm.names)
    label = np.asarray(arrays["label"])
    if not (np.isfinite(label).all() and label.min() >= 0 and label.max() <= 1):
      raise DataError(
        f"data split {split!r}: labels must lie in [0, 1], got range [{label.min()}, {label.max()}]"
      )
    if split != "train" and label.min() == label.max():  # AUC needs both classes
      raise DataError(
        f"data split {split!r} of {config.data.name}: all its labels ({len(label)} rows) are "
        f"{label[0]:g}, so its AUC (the validation monitor, the test metric) is undefined; "
        "the valid and test splits need rows of both classes"
      )
  batch_size, devices = config.train.batch_size, jax.device_count()
  if batch_size > rows["train"]:
    raise ConfigError(
      f"config.train.batch_size={batch_size} exceeds the {rows['train']} rows of the train "
      f"split (no full batch to train on); use at most {rows['train']}"
    )
  if batch_size % devices:
    raise ConfigError(
      f"config.train.batch_size={batch_size} must be a multiple of the {devices} devices"
    )


def nothing_to_compress(config, feature_map) -> str | None:
  """The sentence saying why ``quantize.min_vocab`` selects no field, or None if it selects some."""
  min_vocab = config.quantize.min_vocab
  if feature_map.fields_to_compress(min_vocab):
    return None
  categorical = [f for f in feature_map.fields if f.is_categorical]
  if not categorical:
    return f"nothing to compress: dataset {feature_map.dataset} has no categorical field"
  largest = max(categorical, key=lambda f: f.vocab_size)
  return (
    f"nothing to compress: config.quantize.min_vocab={min_vocab} is above every field's "
    f"vocabulary (largest: {largest.name!r} with {largest.vocab_size} ids)"
  )


def check_stage_inputs(config, dataset: EncodedDataset, workdir, *, compress: bool = True) -> None:
  """A single ``config.stage`` needs the outputs of the stages before it (it never runs them)."""
  needed = _NEEDS.get(config.stage, ())
  fm = dataset.feature_map
  names = [fm.fields[i].name for i in fm.fields_to_compress(config.quantize.min_vocab)]
  # External tables stand in for stage A's run.
  external = bool(config.pretrain.external_tables)
  method = methods.get(config.compress.method)
  stage_b = [workdir.artifact(method, n) for n in names]
  outputs = {
    "pretrain": [] if external else [result_path(workdir.root, "pretrain")],
    "quantize": stage_b if compress else [],
  }
  outputs["pretrain"] += [workdir.table(n) for n in names]
  missing = [
    (stage, path) for stage in needed for path in outputs[stage] if not os.path.exists(path)
  ]
  if missing:
    stages = sorted({stage for stage, _ in missing}, key=needed.index)
    raise ConfigError(
      f"config.stage={config.stage!r} needs the output of stage(s) {', '.join(stages)}, "
      f"which {workdir.root} lacks ({missing[0][1]} is missing); run --config.stage="
      f"{stages[0]} first, or --config.stage=all"
    )
