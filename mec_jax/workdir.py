"""The work directory: its layout (the one place that knows paths), and which settings and data
produced its artifacts (DESIGN §7, §8).

Layout of ``--workdir`` (`Workdir`)::

  config.json                  the resolved config of the last run
  stages.json                  per stage, the settings its artifacts were computed with
  timings.json                 seconds per stage, summed over reruns
  cache/                       encoded dataset (unless data.cache_dir says otherwise)
  pretrain/  finetune/         checkpoints, metrics.jsonl, result of `train.fit`
  pretrain/tables/<field>.npz  stage-A output: embedding [V, d], bias [V] (if any), counts [V]
                               (or the validated tables of pretrain.external_tables)
  quantize/<field>.npz         stage-B output of compress.method pq: a `CompressedTable` per field
  quantize/<field>.<m>.npz     stage-B output of compress.method m (its `methods.Artifact`)
  swap/result.json             stage-A weights with compressed tables, evaluated without training
  finetune/tables/<field>.npz  the kept compressed model's tables (`methods.Artifact`), stage C's product
  export/  export/full/        the kept compressed model and stage A's, servable (`mec_jax.export`)
  report.json  report.md  code_usage.png  auc_vs_bytes.png

Stage records. Whether a work directory can be used, and which config produced its artifacts.

A finished stage is reused on rerun (DESIGN §7), so its artifacts must come from the same settings:
``stages.json`` records, per stage, the config keys that stage depends on (its own and every
upstream stage's). A rerun with different values for a stage whose artifacts exist stops with a
`ConfigError` that names the changed keys and what to delete, instead of silently mixing results.
A key the record lacks was added to mec_jax after the stage ran. Most new keys keep, at their
default, the behaviour from before they existed, so they are not compared and old work directories
stay usable; the few whose default changed what a stage computes (`BEHAVIOUR_BEFORE_KEY`) are
compared against the value that reproduces the old behaviour. A key a newer version dropped no
longer means anything and is not compared either.

Of the ``compress.*`` keys, stages B and C bind ``compress.method`` and the keys that method reads
(``compress_keys``: its `methods.Method.config_keys`, passed in by the pipeline): a PQ work
directory stays usable when a key only QR reads (``compress.qr_random_init``) changes, and a
record written before methods declared their keys (it holds every ``compress.*`` key) is compared
on the method's keys alone, like a record holding a key a newer version dropped. A record also
lists the ``compress.*`` keys that existed but went unread (``compress.unread_keys``), so they are
never compared against it, not even at their `BEHAVIOUR_BEFORE_KEY` value (that applies to keys
that did not exist yet when the stage ran).

A stage also binds to the data it was computed from: its record holds the input files'
fingerprint (``data.files``, `mec_jax.data.fingerprint`: paths relative to ``data.dir``, sizes,
modification times, content digests). A rerun whose files differ (another ``data.dir`` with other
content, a file edited, added or removed) stops naming the files and what to delete; the same
content under another ``data.dir`` (a moved copy) or a file that was only touched (same size and
digest) is the same data and is reused, with a warning. A generated dataset has no files: its
settings are config keys. A record written before fingerprints existed lacks ``data.files``: it
is not compared (as for any key added since) and gets the fingerprint on the next run.

A stage's settings are recorded (`record`) only when the stage starts writing, after the data
loaded and the preflight checks passed; they bind only while the stage has artifacts on disk
(checkpoints, tables, results). So a run that fails before (wrong ``data.dir``, an empty split,
an impossible setting) leaves nothing that refuses the corrected command.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile

from absl import logging

from mec_jax.data import fingerprint
from mec_jax.errors import ConfigError

STAGES_FILE = "stages.json"
_FILES = "data.files"  # a stage record's fingerprint of the input files (not a config key)
# A stage record's compress.* keys that existed but its method does not read (not a config key).
_UNREAD = "compress.unread_keys"
# Keys that change how a run looks, not what it computes.
_IGNORED = {
  "stage",
  "data.dir",
  "data.cache_dir",
  "train.progress",
  "train.log_every_steps",
  "train.checkpoint_every_steps",
  "train.eval_batch_size",
  "train.model_axis_size",  # device layout; a run resumes on another (sparse.SparseTables.restore)
  "compress.auto_candidates",  # which runs compress.method=auto makes, not what one computes
  "compress.auto_monitor",  # which of them compress.method=auto keeps
}
# Keys added with a default that computes something else than mec_jax did before they existed,
# and the value that reproduces what it did then. A record lacking one of these ran with that value.
BEHAVIOUR_BEFORE_KEY = {
  "train.sparse_min_rows": 0,  # every table was a dense Optax parameter
  "quantize.encoder": "dense",  # a full linear encoder
  "quantize.rows_per_epoch": 0,  # every training row each epoch
  "quantize.selection": "error",  # the epoch with the lowest held-out error shipped
  "compress.qr_large_index": "quotient",  # QR's large-table row was v // c
  "compress.qr_random_init": "ones",  # a from-scratch QR small table started at ones
  "compress.pq_candidates": 1,  # pq at a target ratio took the (M, K) using the most bytes
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


class Workdir:
  """Paths of the artifacts of one run (creates nothing: each writer makes its own folder).

  Args:
    root: the ``--workdir`` (made absolute).
  """

  def __init__(self, root: str):
    self.root = os.path.abspath(root)
    self.config = os.path.join(self.root, "config.json")
    self.stages = os.path.join(self.root, STAGES_FILE)
    self.timings = os.path.join(self.root, "timings.json")
    self.cache = os.path.join(self.root, "cache")
    self.tables = os.path.join(self.root, "pretrain", "tables")
    self.quantize = os.path.join(self.root, "quantize")
    self.swap = os.path.join(self.root, "swap", "result.json")
    self.finetuned_tables = os.path.join(self.root, "finetune", "tables")
    self.export = os.path.join(self.root, "export")
    self.export_staging = self.export + ".new"  # written in full, then renamed to export/

  def table(self, field: str) -> str:
    """``pretrain/tables/<field>.npz``: stage A's table of ``field``."""
    return os.path.join(self.tables, f"{safe_name(field)}.npz")

  def compressed(self, field: str) -> str:
    """``quantize/<field>.npz``: stage B's `CompressedTable` of ``field`` (method pq)."""
    return os.path.join(self.quantize, f"{safe_name(field)}.npz")

  def artifact(self, method, field: str) -> str:
    """``quantize/<field><suffix>.npz``: stage B's artifact of ``field`` for ``method`` (a
    `methods.Method`, which names its suffix)."""
    return method.artifact_path(self.quantize, os.path.basename(self.table(field)))

  def finetuned(self, field: str) -> str:
    """``finetune/tables/<field>.npz``: the kept compressed model's table of ``field``."""
    return os.path.join(self.finetuned_tables, f"{safe_name(field)}.npz")


def safe_name(name: str) -> str:
  """``name`` with every character but letters, digits and ``-_.`` replaced by ``_`` (a file name)."""
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def link_stage(source: str, target: str, stage: str = "pretrain") -> None:
  """Makes work directory ``target`` start from the finished ``stage`` of work directory
  ``source``: the stage's directories (``_STAGE_DIRS``) hard-linked in (a finished stage's files
  are never rewritten; copied across file systems) and its record added to ``target``'s
  ``stages.json``. Does nothing if ``target`` has the stage's first directory.

  Used by the grid runner's cells (stage A) and by ``compress.method=auto``'s candidates (stage A,
  and a stage B that an earlier candidate computed with the same settings: `stage_matches`).
  """
  if os.path.exists(os.path.join(target, _STAGE_DIRS[stage][0])):
    return
  os.makedirs(target, exist_ok=True)
  for name in _STAGE_DIRS[stage]:
    src, dst = os.path.join(source, name), os.path.join(target, name)
    if not os.path.isdir(src) and name != _STAGE_DIRS[stage][0]:  # e.g. no swap/ (no swap-in)
      continue
    tmp = dst + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
      shutil.copytree(src, tmp, copy_function=os.link)
    except OSError:  # another filesystem: copy instead
      shutil.rmtree(tmp, ignore_errors=True)
      shutil.copytree(src, tmp)
    if name != _STAGE_DIRS[stage][0]:
      shutil.rmtree(dst, ignore_errors=True)  # a link cut short (the first dir is linked last)
      os.replace(tmp, dst)
  stored = _stored(target)
  stored[stage] = _stored(source)[stage]
  _write_stored(target, stored)
  first = os.path.join(target, _STAGE_DIRS[stage][0])
  os.replace(first + ".tmp", first)  # last: its presence says the stage is linked


def link_same_stage(config, sources, target: str, stage: str, compress_keys=None) -> str | None:
  """Links ``stage`` into ``target`` from the first of the finished work directories ``sources``
  that computed it with ``config``'s settings (`stage_matches`); returns that source, or None
  (also when ``target`` has the stage's outputs already). How two runs that share a stage (PQ's
  stage B, warm-started and from scratch) compute it once."""
  if stage_outputs(target, stage):
    return None
  for source in sources:
    if source != target and stage_matches(config, source, stage, compress_keys):
      logging.info("%s: %s linked from %s (same settings)", target, stage, source)
      link_stage(source, target, stage)
      return source
  return None


def stage_matches(config, root: str, stage: str, compress_keys=None) -> bool:
  """Whether ``root`` holds ``stage``'s outputs, recorded as computed with ``config``'s settings
  for that stage (``compress_keys`` as for `stage_fingerprints`); input files are not compared."""
  stored = _stored(root).get(stage)
  if not stored or not stage_outputs(root, stage):
    return False
  before = {k: v for k, v in stored.items() if k not in (_FILES, _UNREAD)}
  return before == stage_fingerprints(config, compress_keys)[stage]


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


def stage_fingerprints(config, compress_keys=None) -> dict[str, dict]:
  """Per stage, ``{config key: value}`` of the settings its artifacts depend on.

  Args:
    config: the root config.
    compress_keys: names under ``compress`` that the run's method reads (`methods.Method.
      config_keys`); the other ``compress.*`` keys but ``compress.method`` are left out. None:
      every ``compress.*`` key.
  """
  flat = _flatten(config.to_dict())
  if compress_keys is not None:
    keep = {"compress.method", *(f"compress.{k}" for k in compress_keys)}
    flat = {k: v for k, v in flat.items() if not k.startswith("compress.") or k in keep}
  if not flat.get("pretrain.external_tables"):  # no external tables: their row order means nothing
    flat.pop("pretrain.external_index", None)  # (and its default changed from "dataset" to "auto")
  prints = {}
  for stage, (sections, excluded) in _STAGE_SECTIONS.items():
    prints[stage] = {
      k: v
      for k, v in flat.items()
      if k.split(".", 1)[0] in sections and k not in _IGNORED and k not in excluded
    }
  return json.loads(json.dumps(prints))  # canonical JSON types, as they will be read back


def check(config, root: str, inputs: dict | None = None, compress_keys=None) -> None:
  """Raises `ConfigError` if artifacts in ``root`` came from other settings or other data.

  Args:
    config: the root config.
    root: the work directory.
    inputs: `fingerprint.input_fingerprint` of the run's data (None: no files to compare).
    compress_keys: the ``compress.*`` keys the method reads (`stage_fingerprints`).
  """
  stored = _stored(root)
  current = stage_fingerprints(config, compress_keys)
  stale, changes, files, touched = [], {}, [], []
  for stage, before in stored.items():
    if stage not in _STAGE_ARTIFACTS or not stage_outputs(root, stage):
      continue
    diff = _diff(before, current.get(stage, {}))
    data_diff = []
    if inputs is not None and before.get(_FILES):
      data_diff, same_but_touched = fingerprint.differences(before[_FILES], inputs)
      touched += [t for t in same_but_touched if t not in touched]
      if data_diff and before[_FILES]["dir"] != inputs["dir"]:
        data_diff.insert(0, f"data.dir: {before[_FILES]['dir']!r} -> {inputs['dir']!r}")
    if diff or data_diff:
      stale.append(stage)
      changes |= diff
      files += [d for d in data_diff if d not in files]
  if stale:
    listed = [f"config.{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changes.items())]
    if len(files) > 4:
      files = [*files[:4], f"{len(files) - 4} more files differ"]
    what = (
      "other settings" if not files else "other data" if not listed else "other settings and data"
    )
    paths = " ".join(os.path.join(root, d) for s in stale for d in _STAGE_DIRS[s])
    raise ConfigError(
      f"{root} holds stage(s) {', '.join(stale)} computed with {what} "
      f"({'; '.join(listed + files)}). Use a new --workdir, or delete {paths} to recompute them."
    )
  if touched:
    logging.warning(
      "%s: input files touched since the stages ran, same size and content digest; reusing "
      "the stages: %s", root, ", ".join(touched[:4]),
    )  # fmt: skip


def _diff(before: dict, now: dict) -> dict:
  """``{key: (recorded, current)}`` of a stage record ``before`` against the current fingerprint
  ``now`` of that stage: keys its method did not read are skipped, and a key the record lacks
  was added after the stage ran (its value then: `BEHAVIOUR_BEFORE_KEY`)."""
  unread = set(before.get(_UNREAD, ()))
  now = {k: v for k, v in now.items() if k not in unread}
  before = {k: BEHAVIOUR_BEFORE_KEY[k] for k in now if k in BEHAVIOUR_BEFORE_KEY} | before
  return {k: (before[k], now[k]) for k in before if k in now and before[k] != now[k]}


def changed_settings(config, root: str, compress_keys=None) -> list[str]:
  """``"config.<key>: <recorded> -> <current>"`` for each setting that differs between ``root``'s
  stage records and ``config`` (every recorded stage, with outputs or not; input files are not
  compared); ``compress_keys`` as for `stage_fingerprints`. Empty: ``root`` holds what ``config``
  computes."""
  current = stage_fingerprints(config, compress_keys)
  changes = {}
  for stage, before in _stored(root).items():
    if stage in _STAGE_ARTIFACTS:
      changes |= _diff(before, current.get(stage, {}))
  return [f"config.{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changes.items())]


def record(config, root: str, stage: str, inputs: dict | None = None, compress_keys=None) -> None:
  """Records ``stage``'s settings and input fingerprint in ``stages.json`` (call when the
  stage starts writing); ``compress_keys`` as for `stage_fingerprints`."""
  stored = _stored(root)
  stored[stage] = stage_fingerprints(config, compress_keys)[stage]
  if compress_keys is not None and "compress" in _STAGE_SECTIONS[stage][0]:
    stored[stage][_UNREAD] = sorted(
      f"compress.{k}" for k in config.compress if k != "method" and k not in compress_keys
    )
  if inputs is not None:
    stored[stage][_FILES] = inputs
  _write_stored(root, stored)


def _write_stored(root: str, stored: dict) -> None:
  path = os.path.join(root, STAGES_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as fh:
    json.dump(stored, fh, indent=2)
  os.replace(tmp, path)


def check_and_record(config, root: str, inputs: dict | None = None, compress_keys=None) -> None:
  """`check`, then `record` of every stage (for callers that run all stages at once)."""
  check(config, root, inputs, compress_keys)
  for stage in _STAGE_SECTIONS:
    record(config, root, stage, inputs, compress_keys)


def _stored(root: str) -> dict:
  path = os.path.join(root, STAGES_FILE)
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as fh:
      stored = json.load(fh)
  except ValueError as err:
    raise ConfigError(f"{path} is damaged ({err}); delete it and the stage directories") from err
  return stored
