"""SHA-256 digests that artifacts record of their own contents, so a loader can tell an intact file
from a damaged, swapped or edited one.

Digests cover bytes that are order-fixed by construction: an array's stored bytes (with its dtype
and shape, so the same bytes read as another dtype differ), a file's bytes, a JSON value's
canonical text (sorted keys, no whitespace; what was written is what is read back, so the text
is the same on every machine). Imports numpy and the standard library only.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np


def array_sha256(array: np.ndarray) -> str:
  """Hex SHA-256 of ``array``'s dtype, shape and C-order bytes. Cost: one pass over the array."""
  array = np.ascontiguousarray(array)
  digest = hashlib.sha256(f"{array.dtype.str}{list(array.shape)}".encode())
  digest.update(memoryview(array.reshape(-1)).cast("B") if array.size else b"")
  return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
  """Hex SHA-256 of ``data`` (a file's contents)."""
  return hashlib.sha256(data).hexdigest()


def json_sha256(value) -> str:
  """Hex SHA-256 of the canonical JSON text of ``value`` (sorted keys, compact separators)."""
  text = json.dumps(value, sort_keys=True, separators=(",", ":"))
  return bytes_sha256(text.encode())
