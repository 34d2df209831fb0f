"""On-disk cache of encoded splits, so that parsing happens once per dataset and configuration.

Layout of one entry, ``<cache_dir>/<dataset>-<key>/``:

  * ``key.json``          -- the canonical JSON the key hashes (for a human reading the cache);
  * ``feature_map.json``, ``counts.npz`` -- `FeatureMap.save`;
  * ``encoding.json``     -- train statistics of numeric fields (mean/std or bucket edges);
  * ``<split>_ids.npy`` int32 ``[N, F]``, ``<split>_numeric.npy`` float32 ``[N, num_numeric]`` (the
    values of the numeric fields only, see `FieldValues`), ``<split>_label.npy`` float32 ``[N]``.

``key`` is the first 16 hex digits of the SHA-256 of a canonical JSON document holding the dataset
name, every config option the reader and the encoder read, and both their versions; so a change of
any of them (or of the code, when its version is bumped) gives a new entry instead of stale arrays.
An entry is written in a temporary directory and renamed into place, so a reader sees either a
complete entry or none, even when a run is killed half way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable

import numpy as np

from mec_jax.data.schema import SPLITS, FeatureMap
from mec_jax.data.values import FieldValues
from mec_jax.errors import ArtifactError, one_line

ARRAY_FILES = ("ids", "numeric", "label")  # <split>_<name>.npy


def canonical_json(document) -> str:
  """Stable JSON text: sorted keys, tuples as lists, no whitespace variation."""
  return json.dumps(document, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (set, frozenset)):
    return sorted(value)
  if hasattr(value, "to_dict"):  # a nested ConfigDict
    return value.to_dict()
  raise TypeError(f"cache key: cannot serialise {value!r} of type {type(value).__name__}")


def cache_key(document: dict) -> str:
  """16 hex digits identifying ``document`` (a dict of JSON-able options)."""
  return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:16]


def entry_dir(cache_dir: str, dataset: str, document: dict) -> str:
  return os.path.join(cache_dir, f"{dataset}-{cache_key(document)}")


def load_entry(
  directory: str,
) -> tuple[dict[str, dict[str, np.ndarray]], FeatureMap, dict] | None:
  """Returns ``(splits, feature_map, stats)`` of a complete entry, or ``None`` if absent.

  Arrays are memory-mapped read-only (``np.load(mmap_mode="r")``): opening a cached 45M-row
  dataset is instant and pages come in as batches touch them.
  """
  if not os.path.isfile(os.path.join(directory, "feature_map.json")):
    return None
  expected = ["encoding.json", *(f"{s}_{n}.npy" for s in SPLITS for n in ARRAY_FILES)]
  absent = [f for f in expected if not os.path.isfile(os.path.join(directory, f))]
  if absent:
    raise ArtifactError(
      f"{directory}: cache entry lacks {absent} (edited by hand?); delete the directory to "
      f"re-encode"
    )
  feature_map = _read(directory, "feature_map.json", FeatureMap.load, directory)
  stats = _read(directory, "encoding.json", _read_json)
  numeric_fields = feature_map.numeric_indices()
  splits = {}
  for split in SPLITS:
    arrays = {
      name: _read(directory, f"{split}_{name}.npy", lambda path: np.load(path, mmap_mode="r"))
      for name in ARRAY_FILES
    }
    rows = len(arrays["label"])
    expected = {
      "ids": (rows, feature_map.num_fields),
      "numeric": (rows, len(numeric_fields)),
      "label": (rows,),
    }
    for name, array in arrays.items():
      if array.shape != expected[name]:
        raise ArtifactError(
          f"{os.path.join(directory, f'{split}_{name}.npy')}: shape {array.shape}, expected "
          f"{expected[name]} (rows of {split}_label, fields of feature_map.json); delete "
          f"{directory} to re-encode"
        )
    numeric = arrays.pop("numeric")
    arrays["values"] = FieldValues(numeric, numeric_fields, feature_map.num_fields)
    splits[split] = arrays
  return splits, feature_map, stats


def _read_json(path: str):
  with open(path) as fh:
    return json.load(fh)


def _read(directory: str, name: str, reader, *args):
  """``reader(args or path)``; any failure becomes an `ArtifactError` naming the file."""
  path = os.path.join(directory, name)
  try:
    return reader(*(args or (path,)))
  except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
    reason = f"{type(err).__name__}: {' '.join(str(err).split())}"
    if "pickled" in reason:  # numpy's guess for bytes that are no array format at all
      reason = "not a numpy file: garbage bytes?"
    raise ArtifactError(
      f"{path}: cache file is damaged ({reason}); delete {directory} to re-encode"
    ) from err


def save_entry(
  directory: str,
  document: dict,
  splits: dict[str, dict[str, np.ndarray]],
  feature_map: FeatureMap,
  stats: dict,
) -> None:
  """Writes in-memory splits (``values`` a `FieldValues`) as an entry, atomically."""

  def write_arrays(tmp: str) -> tuple[FeatureMap, dict]:
    for split in SPLITS:
      arrays = {
        "ids": splits[split]["ids"],
        "numeric": splits[split]["values"].numeric,
        "label": splits[split]["label"],
      }
      for name in ARRAY_FILES:
        np.save(os.path.join(tmp, f"{split}_{name}.npy"), np.ascontiguousarray(arrays[name]))
    return feature_map, stats

  write_entry(directory, document, write_arrays)


def write_entry(
  directory: str, document: dict, write_arrays: Callable[[str], tuple[FeatureMap, dict]]
) -> None:
  """Builds an entry in a sibling temp dir and renames it into place at the end.

  Args:
    directory: the entry.
    document: the cache-key document (saved as ``key.json``).
    write_arrays: writes the ``<split>_<name>.npy`` files into the directory it is given and
      returns ``(feature_map, stats)``.

  If another process finished the same entry first, its copy is kept and ours is dropped.
  """
  parent = os.path.dirname(os.path.abspath(directory))
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.tmp-", dir=parent)
  except OSError as err:
    raise _unwritable(directory, err) from err
  try:
    feature_map, stats = write_arrays(tmp)
    with open(os.path.join(tmp, "key.json"), "w") as fh:
      json.dump(json.loads(canonical_json(document)), fh, indent=2, sort_keys=True)
    with open(os.path.join(tmp, "encoding.json"), "w") as fh:
      json.dump(stats, fh, indent=2)
    feature_map.save(tmp)  # written last: its presence marks a complete entry
    try:
      os.replace(tmp, directory)
    except OSError:
      if not os.path.isfile(os.path.join(directory, "feature_map.json")):
        raise
  except OSError as err:  # disk full, read-only mount: numpy's own text names no file
    raise _unwritable(directory, err) from err
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def _unwritable(directory: str, err: OSError) -> ArtifactError:
  return ArtifactError(
    f"{directory}: cannot write the cache entry ({one_line(err)}); free disk space or set "
    "data.cache_dir to a writable directory"
  )
