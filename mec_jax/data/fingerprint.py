"""A fingerprint of a dataset's input files, so that results bind to the data they came from.

The encoded-data cache keys on it (a changed file gives a new entry instead of stale arrays) and
a work directory's stage records keep it (`mec_jax.workdir`: a changed file stops a rerun
that would reuse stages computed from the old one).

For a dataset read from ``data.dir`` the fingerprint lists every file under it (or ``data.dir``
itself when it is a file), hidden names and the given excluded directories (the work directory,
the cache) left out, each with its size, modification time and a SHA-256 of its content: the
whole file up to `WHOLE_FILE_BYTES`, else `SAMPLE_BLOCKS` blocks of `BLOCK_BYTES` at fixed,
evenly spread offsets (the first and the last block included), so no file costs more than
4 MiB of reads (a 10 GB file takes milliseconds). A generated dataset (``synthetic``) has no files: its settings are config keys.
"""

from __future__ import annotations

import hashlib
import os

from mec_jax.data.registry import get_reader

SAMPLE_BLOCKS = 64
BLOCK_BYTES = 64 << 10
WHOLE_FILE_BYTES = SAMPLE_BLOCKS * BLOCK_BYTES  # 4 MiB: no file costs more to fingerprint


def content_digest(path: str, size: int) -> str:
  """SHA-256 (hex) of the file's content, or of `SAMPLE_BLOCKS` fixed blocks past
  `WHOLE_FILE_BYTES` (the size is hashed with them)."""
  digest = hashlib.sha256()
  with open(path, "rb") as fh:
    if size <= WHOLE_FILE_BYTES:
      for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
      return digest.hexdigest()
    digest.update(str(size).encode())
    last = size - BLOCK_BYTES
    for i in range(SAMPLE_BLOCKS):
      fh.seek(last * i // (SAMPLE_BLOCKS - 1))
      digest.update(fh.read(BLOCK_BYTES))
  return "sampled:" + digest.hexdigest()


def input_fingerprint(data_config, exclude: tuple[str, ...] = ()) -> dict | None:
  """``{"dir": abspath, "files": {relpath: {"bytes", "mtime_ns", "sha256"}}}`` of the files
  under ``data.dir``, or None for a dataset without files (or a ``data.dir`` that does not
  exist: the reader names that error).

  Args:
    data_config: the ``config.data`` ConfigDict.
    exclude: directories to leave out (a work directory or cache inside ``data.dir``).
  """
  if "dir" not in get_reader(data_config.name).CONFIG_KEYS:
    return None
  location = str(data_config.get("dir", "") or "")
  if not location or not os.path.exists(location):
    return None
  root = os.path.abspath(location)
  if os.path.isfile(root):
    paths = {os.path.basename(root): root}
  else:
    skip = {os.path.abspath(e) for e in exclude if e}
    paths = {}
    for folder, dirs, files in os.walk(root):
      dirs[:] = sorted(
        d for d in dirs if not d.startswith(".") and os.path.join(folder, d) not in skip
      )
      for name in files:
        if not name.startswith("."):
          path = os.path.join(folder, name)
          paths[os.path.relpath(path, root)] = path
  files = {}
  for rel, path in sorted(paths.items()):
    stat = os.stat(path)
    files[rel] = {
      "bytes": stat.st_size,
      "mtime_ns": stat.st_mtime_ns,
      "sha256": content_digest(path, stat.st_size),
    }
  return {"dir": root, "files": files}


def content_key(fingerprint: dict | None) -> dict | None:
  """The part of a fingerprint that says what the data is (sizes and digests; not where it
  lies or when it was touched): what the cache key holds."""
  if fingerprint is None:
    return None
  return {rel: [f["bytes"], f["sha256"]] for rel, f in fingerprint["files"].items()}


def differences(before: dict, now: dict) -> tuple[list[str], list[str]]:
  """``(changes, touched)`` between two fingerprints, as phrases naming the files.

  ``changes``: files added, removed, resized or with other content. ``touched``: files whose
  modification time alone changed (a copy or ``touch``: same size and digest).
  """
  old, new = before.get("files", {}), now.get("files", {})
  root = now.get("dir", "")
  changes, touched = [], []
  for rel in sorted(set(old) | set(new)):
    path = os.path.join(root, rel) if os.path.isdir(root) else root
    if rel not in new:
      changes.append(f"{os.path.join(before.get('dir', root), rel)} is gone")
    elif rel not in old:
      changes.append(f"{path} is new")
    elif old[rel]["bytes"] != new[rel]["bytes"]:
      changes.append(f"{path} changed size ({old[rel]['bytes']} -> {new[rel]['bytes']} bytes)")
    elif old[rel]["sha256"] != new[rel]["sha256"]:
      changes.append(f"{path} changed content")
    elif old[rel].get("mtime_ns") != new[rel].get("mtime_ns"):
      touched.append(path)
  return changes, touched
