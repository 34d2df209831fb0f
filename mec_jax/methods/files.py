"""One ``.npz`` per artifact for the dataclass artifacts of the baselines (arrays + JSON meta)."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from mec_jax.compression.table import read_npz
from mec_jax.errors import ArtifactError


def save_dataclass(path: str, art, arrays: dict | None = None, **meta) -> None:
  """Writes the array fields of dataclass ``art`` and its other fields as JSON, atomically.

  Args:
    path: the ``.npz`` file.
    art: a dataclass artifact with a ``method``.
    arrays: arrays stored in place of fields of the same name (e.g. a packed form).
    **meta: extra JSON-able entries `load_dataclass` hands back under their names.
  """
  stored, info = {}, {"method": art.method} | meta
  for field in dataclasses.fields(art):
    value = getattr(art, field.name)
    if isinstance(value, np.ndarray):
      stored[field.name] = value
    elif value is not None:
      info[field.name] = value
  stored |= arrays or {}
  stored["meta"] = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **stored)
  os.replace(tmp, path)


def load_dataclass(path: str, *methods: str) -> tuple[dict, dict]:
  """``(arrays, meta)`` of a file `save_dataclass` wrote for one of ``methods``, ``meta``
  without ``method``.

  Raises:
    ArtifactError: a missing or damaged file, or one that holds another method.
  """
  arrays = read_npz(path, ("meta",), f"{'/'.join(methods)} artifact")
  try:
    meta = json.loads(bytes(arrays.pop("meta")).decode())
  except ValueError as err:
    raise ArtifactError(f"{path}: unreadable meta ({err}); delete it to recompute") from err
  stored = meta.pop("method", None)
  if stored not in methods:
    expected = " or ".join(map(repr, methods))
    raise ArtifactError(f"{path}: holds method {stored!r}, expected {expected}")
  return arrays, meta


def build_dataclass(cls, arrays: dict, meta: dict):
  """``cls(**fields)`` with the fields missing from the file set to None."""
  return cls(**({f.name: None for f in dataclasses.fields(cls)} | meta | arrays))


def with_params(art, layer, params: dict[str, str], convert=np.asarray):
  """A copy of dataclass ``art`` whose fields take the values of ``layer``'s parameters.

  Args:
    art: the stage-B artifact.
    layer: the layer ``art.to_layer`` made (trained in stage C).
    params: parameter attribute of ``layer`` -> field of ``art``; absent parameters keep the field.
    convert: applied to each parameter's value.
  """
  values = {}
  for attr, field in params.items():
    param = getattr(layer, attr, None)
    if param is not None:
      values[field] = np.asarray(convert(param[...]))
  return dataclasses.replace(art, **values)


class Stored:
  """Mixin of the dataclass artifacts: `save`/`load` through one ``.npz``, and `of` (adapt)."""

  @classmethod
  def of(cls, art):
    """``art`` (the artifact class this one extends, e.g. from `mec_jax.layers`) as ``cls``."""
    if isinstance(art, cls):
      return art
    return cls(**{f.name: getattr(art, f.name) for f in dataclasses.fields(art)})

  def save(self, path: str) -> None:
    save_dataclass(path, self)

  @classmethod
  def load(cls, path: str):
    return build_dataclass(cls, *load_dataclass(path, cls.method))
