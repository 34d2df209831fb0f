"""Which config produced the artifacts of a work directory, and a clear error when it changes.

A finished stage is reused on rerun (DESIGN §7), so its artifacts must come from the same settings:
``stages.json`` records, per stage, the config keys that stage depends on (its own and every
upstream stage's). A rerun with different values for a stage whose artifacts exist stops with a
`ValueError` that names the changed keys and what to delete, instead of silently mixing results.
"""

from __future__ import annotations

import glob
import json
import os

# Keys that change how a run looks, not what it computes.
_IGNORED = {
  "stage",
  "data.dir",
  "data.cache_dir",
  "train.progress",
  "train.log_every_steps",
  "train.checkpoint_every_steps",
  "train.eval_batch_size",
}
# Stage A and B use pretrain.model; model.name is stage C's backbone only (model-agnostic reuse).
_STAGE_SECTIONS = {
  "pretrain": (("data", "model", "pretrain", "train"), {"model.name"}),
  "quantize": (("data", "model", "pretrain", "train", "quantize", "compress"), {"model.name"}),
  "finetune": (("data", "model", "pretrain", "train", "quantize", "compress", "finetune"), set()),
}
# Artifacts (relative globs) that a stage's settings produced.
_STAGE_ARTIFACTS = {
  "pretrain": ("pretrain",),
  "quantize": ("quantize/*.npz", "swap/result.json"),
  "finetune": ("finetune",),
}


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out |= _flatten(value, name + ".")
    else:
      out[name] = list(value) if isinstance(value, tuple) else value
  return out


def stage_fingerprints(config) -> dict[str, dict]:
  flat = _flatten(config.to_dict())
  prints = {}
  for stage, (sections, excluded) in _STAGE_SECTIONS.items():
    prints[stage] = {
      k: v
      for k, v in flat.items()
      if k.split(".", 1)[0] in sections and k not in _IGNORED and k not in excluded
    }
  return json.loads(json.dumps(prints))  # canonical JSON types, as they will be read back


def check_and_record(config, root: str) -> None:
  """Raises ValueError if existing artifacts in ``root`` came from other settings; else records."""
  path = os.path.join(root, "stages.json")
  current = stage_fingerprints(config)
  stored = {}
  if os.path.exists(path):
    with open(path) as fh:
      stored = json.load(fh)
  stale, changes = [], {}
  for stage, before in stored.items():
    present = [p for g in _STAGE_ARTIFACTS.get(stage, ()) for p in glob.glob(os.path.join(root, g))]
    diff = {
      k: (before.get(k), current[stage].get(k))
      for k in set(before) | set(current.get(stage, {}))
      if before.get(k) != current.get(stage, {}).get(k)
    }
    if present and diff:
      stale.append((stage, present))
      changes |= diff
  if stale:
    listed = ", ".join(f"config.{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changes.items()))
    paths = " ".join(sorted({p for _, ps in stale for p in ps}))
    raise ValueError(
      f"{root} holds stage(s) {', '.join(s for s, _ in stale)} computed with other settings "
      f"({listed}). Use a new --workdir, or delete {paths} to recompute them."
    )
  tmp = path + ".tmp"
  with open(tmp, "w") as fh:
    json.dump(current, fh, indent=2)
  os.replace(tmp, path)
