"""Whether a work directory can be used, and which config produced its artifacts.

A finished stage is reused on rerun (DESIGN §7), so its artifacts must come from the same settings:
``stages.json`` records, per stage, the config keys that stage depends on (its own and every
upstream stage's). A rerun with different values for a stage whose artifacts exist stops with a
`ConfigError` that names the changed keys and what to delete, instead of silently mixing results.
A key the record lacks was added to mec_jax after the stage ran. Most new keys keep, at their
default, the behaviour from before they existed, so they are not compared and old work directories
stay usable; the few whose default changed what a stage computes (`BEHAVIOUR_BEFORE_KEY`) are
compared against the value that reproduces the old behaviour. A key a newer version dropped no
longer means anything and is not compared either.

A stage's settings are recorded (`record`) only when the stage starts writing, after the data
loaded and the preflight checks passed; they bind only while the stage has artifacts on disk
(checkpoints, tables, results). So a run that fails before (wrong ``data.dir``, an empty split,
an impossible setting) leaves nothing that refuses the corrected command.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile

from mec_jax.errors import ConfigError

# Keys that change how a run looks, not what it computes.
_IGNORED = {
  "stage",
  "data.dir",
  "data.cache_dir",
  "train.progress",
  "train.log_every_steps",
  "train.checkpoint_every_steps",
  "train.eval_batch_size",
  "train.model_axis_size",  # device layout; a run resumes on another (loop._restore)
}
# Keys added with a default that computes something else than mec_jax did before they existed,
# and the value that reproduces what it did then. A record lacking one of these ran with that value.
BEHAVIOUR_BEFORE_KEY = {
  "train.sparse_min_rows": 0,  # every table was a dense Optax parameter
  "quantize.encoder": "dense",  # a full linear encoder
  "quantize.rows_per_epoch": 0,  # every training row each epoch
  "quantize.selection": "error",  # the epoch with the lowest held-out error shipped
}
# Stage A and B use pretrain.model; model.name is stage C's backbone only (model-agnostic reuse).
_STAGE_SECTIONS = {
  "pretrain": (("data", "model", "pretrain", "train"), {"model.name"}),
  "quantize": (("data", "model", "pretrain", "train", "quantize", "compress"), {"model.name"}),
  "finetune": (("data", "model", "pretrain", "train", "quantize", "compress", "finetune"), set()),
}
# Artifacts (relative globs) that a stage's settings produced, and what to delete to redo it.
_STAGE_ARTIFACTS = {
  "pretrain": ("pretrain/result.json", "pretrain/checkpoints/*", "pretrain/tables/*.npz"),
  "quantize": ("quantize/*.npz", "swap/result.json"),
  "finetune": ("finetune/result.json", "finetune/checkpoints/*", "finetune/tables/*.npz"),
}
_STAGE_DIRS = {
  "pretrain": ("pretrain",),
  "quantize": ("quantize", "swap"),
  "finetune": ("finetune",),
}


def check_workdir(root: str, *, writable: bool) -> None:
  """Raises `ConfigError` unless ``root`` can serve as a work directory.

  Args:
    root: the ``--workdir``.
    writable: the run will write there (created if missing); else it must exist (report).
  """
  if os.path.exists(root) and not os.path.isdir(root):
    raise ConfigError(f"--workdir={root} is a file; expected a directory")
  if not writable:
    if not os.path.isdir(root):
      raise ConfigError(f"--workdir={root} does not exist; nothing to report")
    return
  try:
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryFile(dir=root):
      pass
  except OSError as err:
    raise ConfigError(
      f"--workdir={root} cannot be written ({err.strerror or err}); use a writable directory"
    ) from err


def is_writable(directory: str) -> bool:
  """Whether a file can be created in the existing ``directory`` (False on a read-only mount)."""
  try:
    with tempfile.TemporaryFile(dir=directory):
      return True
  except OSError:
    return False


def stage_outputs(root: str, stage: str) -> list[str]:
  """Paths in ``root`` that ``stage`` wrote (checkpoints, tables, results)."""
  return sorted(p for g in _STAGE_ARTIFACTS[stage] for p in glob.glob(os.path.join(root, g)))


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


def check(config, root: str) -> None:
  """Raises `ConfigError` if artifacts in ``root`` came from other settings than ``config``."""
  stored = _stored(root)
  current = stage_fingerprints(config)
  stale, changes = [], {}
  for stage, before in stored.items():
    now = current.get(stage, {})
    # A key the record lacks was added after the stage ran (see the module docstring).
    before = {k: BEHAVIOUR_BEFORE_KEY[k] for k in now if k in BEHAVIOUR_BEFORE_KEY} | before
    diff = {k: (before[k], now.get(k)) for k in before if k in now and before[k] != now[k]}
    if diff and stage in _STAGE_ARTIFACTS and stage_outputs(root, stage):
      stale.append(stage)
      changes |= diff
  if stale:
    listed = ", ".join(f"config.{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changes.items()))
    paths = " ".join(os.path.join(root, d) for s in stale for d in _STAGE_DIRS[s])
    raise ConfigError(
      f"{root} holds stage(s) {', '.join(stale)} computed with other settings "
      f"({listed}). Use a new --workdir, or delete {paths} to recompute them."
    )


def record(config, root: str, stage: str) -> None:
  """Records ``stage``'s settings in ``stages.json`` (call when the stage starts writing)."""
  stored = _stored(root)
  stored[stage] = stage_fingerprints(config)[stage]
  path = os.path.join(root, "stages.json")
  tmp = path + ".tmp"
  with open(tmp, "w") as fh:
    json.dump(stored, fh, indent=2)
  os.replace(tmp, path)


def check_and_record(config, root: str) -> None:
  """`check`, then `record` of every stage (for callers that run all stages at once)."""
  check(config, root)
  for stage in _STAGE_SECTIONS:
    record(config, root, stage)


def _stored(root: str) -> dict:
  path = os.path.join(root, "stages.json")
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as fh:
      stored = json.load(fh)
  except ValueError as err:
    raise ConfigError(f"{path} is damaged ({err}); delete it and the stage directories") from err
  return stored
