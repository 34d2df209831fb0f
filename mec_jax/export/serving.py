"""Loading and running an exported model (`mec_jax.export.load`): jax and numpy only.

An export directory (written by `mec_jax.export.writer.export_model`)::

  manifest.json    fields (names, vocab sizes, OOV ids, table kinds), parameter names, shapes,
                   dtypes and SHA-256 digests, bytes, a summary of the program's signature
                   (`mec_jax.export.program`), provenance, and under ``sha256`` the digest of
                   the program file and of each manifest section (`mec_jax.digest`)
  model.stablehlo  the forward pass ``(*params, ids [b, F], values [b, F]) -> logits [b]``:
                   a `jax.export` serialization (StableHLO + signature) with a symbolic
                   batch dimension ``b``
  params.npz       every array of the model in program order (codes, codebooks, dense layers)
  vocab.npz        (when the manifest's ``preprocess`` section is not null) each categorical
                   field's kept raw values and their ids, for `ServedModel.predict_raw`
                   (`mec_jax.export.raw`); the section records each array's SHA-256

Nothing here imports flax or the training code, so a serving process holds only the program,
the arrays and jax.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from mec_jax import digest
from mec_jax.errors import ArtifactError, one_line
from mec_jax.export import program
from mec_jax.export.raw import RawEncoder
from mec_jax.ids import host_ids

REDO = "export again with --config.stage=export"

FORMAT_VERSION = 3  # 2: digests of every array, program, manifest section; 3: ``preprocess``
MANIFEST = "manifest.json"
PROGRAM = "model.stablehlo"
PARAMS = "params.npz"
VOCAB = "vocab.npz"
DIGESTS = "sha256"  # manifest key: {PROGRAM: file digest, "manifest": {section: digest}}
SECTIONS = ("format_version", "fields", "params", "param_bytes", "program", "preprocess", "meta")
FIELD_KEYS = {"name": str, "vocab_size": int, "oov_id": int, "table": str}
PARAM_KEYS = {"key": str, "path": str, "shape": list, "dtype": str, "sha256": str}


class ServedModel:
  """A loaded export: ``model(ids, values) -> logits [batch]`` for any batch size.

  Attributes:
    manifest: the parsed ``manifest.json``.
    field_names: the F input fields in column order of ``ids``/``values``.
    vocab_sizes: ids per field.
    oov_ids: per field, the row out-of-range ids read (the id policy of
      `mec_jax.layers.base`, applied in numpy before the int32 cast, so int64 ids ``>= 2**31``
      read it too instead of wrapping onto a real row).
  """

  def __init__(
    self, exported, params: list[jax.Array], manifest: dict, raw: RawEncoder | None = None
  ):
    self._exported = exported
    self._call = jax.jit(exported.call)  # one compiled program per batch size, cheap dispatch
    self._params = params
    self.manifest = manifest
    self.field_names = [f["name"] for f in manifest["fields"]]
    self.vocab_sizes = [int(f["vocab_size"]) for f in manifest["fields"]]
    self.oov_ids = [int(f["oov_id"]) for f in manifest["fields"]]
    self._raw = raw

  @property
  def num_fields(self) -> int:
    return len(self.field_names)

  @property
  def param_bytes(self) -> int:
    """Bytes of every array the model holds (what serving keeps resident besides jax)."""
    return int(sum(p.nbytes for p in self._params))

  def __call__(self, ids, values=None) -> jax.Array:
    """Logits of a batch.

    Args:
      ids: int ``[batch, num_fields]`` ids in the dataset's encoding (`mec_jax.data.schema`),
        any integer width; ids outside ``[0, vocab_size)`` of their field read its OOV row.
      values: float ``[batch, num_fields]`` (1.0 for categorical fields, the normalized number
        for numeric ones); ``None`` means all ones.

    Returns:
      float32 ``[batch]`` logits (apply a sigmoid for click probabilities).
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] != self.num_fields:
      raise ValueError(f"ids has shape {ids.shape}, expected [batch, {self.num_fields}]")
    if not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    values = np.ones(ids.shape, np.float32) if values is None else np.asarray(values)
    if values.shape != ids.shape:
      raise ValueError(f"values has shape {values.shape}, expected ids' shape {ids.shape}")
    ids = host_ids(ids, np.array(self.vocab_sizes), np.array(self.oov_ids), "served ids")
    return self._call(*self._params, jnp.asarray(ids), jnp.asarray(values, jnp.float32))

  def encode_raw(self, rows) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, values)`` of raw rows, exactly as training encoded them (`mec_jax.export.raw`).

    Raises:
      ValueError: the export has no vocabularies, or a column is missing (named) or malformed.
    """
    if self._raw is None:
      raise ValueError(
        "predict_raw: this export holds no vocabularies (written by export_model without "
        "preprocess); export again with --config.stage=export"
      )
    return self._raw(rows)

  def predict_raw(self, rows) -> np.ndarray:
    """Click probabilities of raw rows.

    Args:
      rows: a dict of columns (lists or arrays) or a pandas DataFrame in the dataset's raw
        layout, one column per field name (``field_names``; extra columns are ignored). Criteo:
        ``I1..I13`` numbers or numeric strings, ``C1..C26`` hex strings; blanks (``""``, None,
        NaN) are missing values, encoded as training encoded a blank cell.

    Returns:
      float32 ``[rows]`` probabilities (sigmoid of the logits).

    Raises:
      ValueError: a missing column (named), unparseable values, or an export without
        vocabularies.
    """
    ids, values = self.encode_raw(rows)
    return np.asarray(jax.nn.sigmoid(self(ids, values)))


def seal_manifest(manifest: dict, program_bytes: bytes) -> dict:
  """``manifest`` (as JSON reads it back) plus its digests: the program file's and each
  section's, so `load` names the section or file that changed."""
  manifest = json.loads(json.dumps(manifest))
  sections = {key: digest.json_sha256(manifest[key]) for key in SECTIONS}
  return manifest | {DIGESTS: {PROGRAM: digest.bytes_sha256(program_bytes), "manifest": sections}}


def read_manifest(directory: str) -> dict:
  """The parsed and verified ``manifest.json`` of an export directory.

  Raises:
    ArtifactError: naming the file when it is absent, not JSON, of another format version,
      lacks a key, or a section differs from its recorded digest (edited or damaged).
  """
  path = os.path.join(directory, MANIFEST)
  if not os.path.isfile(path):
    raise ArtifactError(
      f"{path}: no exported model here (expected {MANIFEST}, {PROGRAM}, {PARAMS})"
    )
  try:
    with open(path, "rb") as fh:
      manifest = json.loads(fh.read().decode())
  except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
    raise ArtifactError(f"{path}: unreadable ({_reason(err)}); {REDO}") from err
  if not isinstance(manifest, dict):
    raise ArtifactError(f"{path}: holds a {type(manifest).__name__}, expected an object; {REDO}")
  if manifest.get("format_version") != FORMAT_VERSION:
    raise ArtifactError(
      f"{path}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}; "
      f"{REDO}"
    )
  missing = [key for key in (*SECTIONS, DIGESTS) if key not in manifest]
  if missing:
    raise ArtifactError(f"{path}: lacks keys {missing}; {REDO}")
  recorded = manifest[DIGESTS].get("manifest") if isinstance(manifest[DIGESTS], dict) else None
  if not isinstance(recorded, dict):
    raise ArtifactError(f"{path}: '{DIGESTS}' holds no section digests; {REDO}")
  for key in SECTIONS:
    if recorded.get(key) != digest.json_sha256(manifest[key]):
      raise ArtifactError(
        f"{path}: section {key!r} differs from its recorded SHA-256 (edited or damaged after "
        f"export); {REDO}"
      )
  _check_entries(path, manifest["fields"], FIELD_KEYS, "fields")
  _check_entries(path, manifest["params"], PARAM_KEYS, "params")
  preprocess = manifest["preprocess"]
  if preprocess is not None and not (
    isinstance(preprocess, dict)
    and isinstance(preprocess.get("fields"), list)
    and isinstance(preprocess.get("sha256"), dict)
    and [f.get("name") for f in preprocess["fields"] if isinstance(f, dict)]
    == [f["name"] for f in manifest["fields"]]
  ):
    raise ArtifactError(f"{path}: 'preprocess' does not describe the fields; {REDO}")
  return manifest


def _reason(err: BaseException) -> str:
  """``err`` in a few words, without the path the message already starts with."""
  if isinstance(err, OSError) and err.strerror:
    return err.strerror
  return f"{type(err).__name__}: {one_line(err)}"


def _check_entries(path: str, entries, keys: dict, section: str) -> None:
  if not isinstance(entries, list) or not entries:
    raise ArtifactError(f"{path}: {section!r} must be a non-empty list; {REDO}")
  for i, entry in enumerate(entries):
    bad = [
      k
      for k, kind in keys.items()
      if not isinstance(entry, dict) or not isinstance(entry.get(k), kind)
    ]
    if bad:
      raise ArtifactError(f"{path}: {section}[{i}] lacks or mistypes {bad}; {REDO}")


def _read_program(directory: str, manifest: dict):
  program_path = os.path.join(directory, PROGRAM)
  try:
    with open(program_path, "rb") as fh:
      data = fh.read()
  except OSError as err:
    raise ArtifactError(f"{program_path}: unreadable ({_reason(err)}); {REDO}") from err
  if digest.bytes_sha256(data) != manifest[DIGESTS].get(PROGRAM):
    raise ArtifactError(
      f"{program_path}: SHA-256 differs from the one {MANIFEST} records (damaged or replaced "
      f"after export); {REDO}"
    )
  return program.read_program(program_path)


def _read_params(directory: str, manifest: dict, avals) -> list[jax.Array]:
  params_path = os.path.join(directory, PARAMS)
  specs = manifest["params"]
  if not os.path.isfile(params_path):
    raise ArtifactError(f"{params_path}: missing (the arrays of the exported model); {REDO}")
  if len(specs) != len(avals):
    raise ArtifactError(
      f"{params_path}: manifest lists {len(specs)} arrays, the program takes {len(avals)}"
    )
  params = []
  try:
    with np.load(params_path, allow_pickle=False) as arrays:
      extra = sorted(set(arrays.files) - {spec["key"] for spec in specs})
      if extra:
        raise ArtifactError(f"{params_path}: arrays {extra[:5]} are not in {MANIFEST}; {REDO}")
      for spec, aval in zip(specs, avals, strict=True):
        where = f"{params_path}: {spec['key']} ({spec['path']})"
        if spec["key"] not in arrays.files:
          raise ArtifactError(f"{params_path}: no array {spec['key']!r} ({spec['path']}); {REDO}")
        array = arrays[spec["key"]]
        if array.shape != aval.shape or array.dtype != aval.dtype:
          raise ArtifactError(
            f"{where} is {array.dtype}{list(array.shape)}, the program expects "
            f"{aval.dtype}{list(aval.shape)}"
          )
        if digest.array_sha256(array) != spec["sha256"]:
          raise ArtifactError(
            f"{where}: SHA-256 differs from the one {MANIFEST} records (arrays swapped or "
            f"damaged after export); {REDO}"
          )
        params.append(jnp.asarray(array))
  except ArtifactError:
    raise
  except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, struct.error) as err:
    raise ArtifactError(f"{params_path}: damaged ({_reason(err)}); {REDO}") from err
  return params


def load(directory: str) -> ServedModel:
  """Loads an export directory (e.g. ``<workdir>/export``) for serving, verifying every byte.

  The manifest's sections, the program file and every array are checked against the SHA-256
  digests the export recorded; cost: one read and one hash of every file (seconds per GB).

  Raises:
    ArtifactError: naming the file and what differs: a missing or damaged file, another format
      version, a manifest section edited after export (a renamed field, a changed vocab size),
      a program or array whose bytes differ from their digest (arrays swapped in ``params.npz``),
      or arrays that do not match the program's signature.
  """
  manifest = read_manifest(directory)
  exported = _read_program(directory, manifest)
  params = _read_params(directory, manifest, exported.in_avals[:-2])  # the last two: ids, values
  raw = None
  if manifest["preprocess"] is not None:
    raw = RawEncoder(manifest["preprocess"], _read_vocab(directory, manifest["preprocess"]))
  return ServedModel(exported, params, manifest, raw)


def _read_vocab(directory: str, preprocess: dict) -> dict[str, np.ndarray]:
  """The arrays of ``vocab.npz``, each checked against the digest ``preprocess`` records."""
  path = os.path.join(directory, VOCAB)
  if not os.path.isfile(path):
    raise ArtifactError(f"{path}: missing (the vocabularies of predict_raw); {REDO}")
  digests = preprocess["sha256"]
  try:
    with np.load(path, allow_pickle=False) as arrays:
      if sorted(arrays.files) != sorted(digests):
        raise ArtifactError(
          f"{path}: holds arrays {sorted(arrays.files)[:5]}, {MANIFEST} lists "
          f"{sorted(digests)[:5]}; {REDO}"
        )
      out = {key: arrays[key] for key in arrays.files}
  except ArtifactError:
    raise
  except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, struct.error) as err:
    raise ArtifactError(f"{path}: damaged ({_reason(err)}); {REDO}") from err
  for key, array in out.items():
    if digest.array_sha256(array) != digests[key]:
      raise ArtifactError(
        f"{path}: {key}: SHA-256 differs from the one {MANIFEST} records (vocabulary edited or "
        f"damaged after export); {REDO}"
      )
  return out
