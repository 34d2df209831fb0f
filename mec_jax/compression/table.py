"""`CompressedTable`: the artifact stage B hands to stage C (codes + codebooks of one field)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
import zlib

import numpy as np

from mec_jax import digest
from mec_jax.errors import ArtifactError
from mec_jax.ids import host_ids

META_KEYS = {"name", "variant", "stats"}


def code_dtype(codebook_size: int) -> np.dtype:
  """Smallest unsigned integer dtype that holds ids ``0..codebook_size-1``."""
  if codebook_size < 2:
    raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
  for dtype in (np.uint8, np.uint16, np.uint32):
    if codebook_size - 1 <= np.iinfo(dtype).max:
      return np.dtype(dtype)
  raise ValueError(f"codebook_size {codebook_size} does not fit in uint32")


def bits_per_code(codebook_size: int) -> int:
  """Bits one bit-packed code takes: ``ceil(log2 codebook_size)`` (at least 1)."""
  return max(1, math.ceil(math.log2(codebook_size)))


def packed_nbytes(num_rows: int, num_subspaces: int, codebook_size: int) -> int:
  """Bytes of ``num_rows * num_subspaces`` codes at ``ceil(log2 K)`` bits each (DESIGN §4)."""
  return math.ceil(num_rows * num_subspaces * bits_per_code(codebook_size) / 8)


def code_usage(codes, codebook_size: int, weights=None) -> np.ndarray:
  """float64 ``[M, K]``: how many rows (or how much ``weights [num_rows]``) use each code."""
  codes = np.asarray(codes)
  return np.stack(  # one column at a time: no [V, M] int64 copy
    [
      np.bincount(codes[:, m], weights=weights, minlength=codebook_size).astype(np.float64)
      for m in range(codes.shape[1])
    ]
  ).reshape(codes.shape[1], codebook_size)


def usage_entropy(codes, codebook_size: int, weights=None) -> np.ndarray:
  """float ``[M]``: entropy of each sub-space's code usage divided by ``ln K`` (1 = uniform).

  Args:
    codes: ``[num_rows, M]`` integer codes.
    codebook_size: K.
    weights: optional ``[num_rows]`` row weights (usage counted with these weights).
  """
  return normalized_entropy(code_usage(codes, codebook_size, weights))


def normalized_entropy(usage: np.ndarray) -> np.ndarray:
  """float ``[M]``: entropy of each row of ``usage [M, K]`` (counts or weights) divided by ln K."""
  out = np.empty(usage.shape[0])
  for m, row in enumerate(usage):
    p = row[row > 0] / row.sum()
    out[m] = -np.sum(p * np.log(p)) / math.log(usage.shape[1])
  return out


@dataclasses.dataclass
class CompressedTable:
  """Product-quantized replacement for one ``[vocab_size, dim]`` embedding table.

  Row ``v`` is reconstructed as ``concat_m codebooks[m, codes[v, m]]`` (dim ``M * s``).
  Codebooks live in the **embedding space of the table they replace**, so the reconstruction can
  be swapped into the stage-A model directly and initializes stage C.

  Attributes:
    codes: ``[vocab_size, num_subspaces]`` in the smallest unsigned dtype holding codebook_size.
    codebooks: float32 ``[num_subspaces, codebook_size, subspace_dim]``.
    first_order: optional float32 ``[num_subspaces, codebook_size]``: compressed first-order (LR)
      weights; a row's weight is ``sum_m first_order[m, codes[v, m]]``.
    name: field name.
    variant: stage-B variant that produced it (``mec``, ``reference``, ``kmeans``, ...).
    usage_entropy: float ``[num_subspaces]`` usage entropy of the codes over all rows / ln K.
    stats: free-form JSON-able diagnostics (losses, reconstruction error, epochs, ...).
  """

  codes: np.ndarray
  codebooks: np.ndarray
  first_order: np.ndarray | None = None
  name: str = ""
  variant: str = "mec"
  usage_entropy: np.ndarray | None = None
  stats: dict = dataclasses.field(default_factory=dict)
  method = "pq"  # the `compress.method` that makes it (mec_jax.methods)

  def __post_init__(self):
    self.codebooks = np.asarray(self.codebooks, np.float32)
    if self.codebooks.ndim != 3:
      raise ValueError(
        f"table {self.name!r}: codebooks must be [num_subspaces, codebook_size, subspace_dim], "
        f"got shape {self.codebooks.shape}"
      )
    codes = np.asarray(self.codes)
    if codes.ndim != 2 or codes.shape[1] != self.num_subspaces or not codes.shape[0]:
      raise ValueError(
        f"table {self.name!r}: codes must be [vocab_size >= 1, {self.num_subspaces}], got "
        f"{codes.shape}"
      )
    if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
      raise ValueError(
        f"table {self.name!r}: codes must lie in [0, {self.codebook_size}), "
        f"got range [{codes.min()}, {codes.max()}]"
      )
    self.codes = codes.astype(code_dtype(self.codebook_size))
    if self.first_order is not None:
      self.first_order = np.asarray(self.first_order, np.float32)
      if self.first_order.shape != self.codebooks.shape[:2]:
        raise ValueError(
          f"table {self.name!r}: first_order must be {self.codebooks.shape[:2]}, "
          f"got {self.first_order.shape}"
        )

  @property
  def vocab_size(self) -> int:
    """V, the number of rows (ids): ``codes.shape[0]``."""
    return self.codes.shape[0]

  @property
  def num_subspaces(self) -> int:
    """M, codes per row: ``codebooks.shape[0]``."""
    return self.codebooks.shape[0]

  @property
  def codebook_size(self) -> int:
    """K, codewords per sub-space: ``codebooks.shape[1]``."""
    return self.codebooks.shape[1]

  @property
  def subspace_dim(self) -> int:
    """s, floats per codeword: ``codebooks.shape[2]``."""
    return self.codebooks.shape[2]

  @property
  def dim(self) -> int:
    """``M * s``, the size of a reconstructed row."""
    return self.num_subspaces * self.subspace_dim

  def reconstruct(self, start: int = 0, stop: int | None = None) -> np.ndarray:
    """float32 ``[stop - start, dim]``: the dense rows ``[start, stop)`` (default: all) these
    codes stand for; decode large tables a block of rows at a time."""
    codes = self.codes[start:stop]
    m = np.arange(self.num_subspaces)[None, :]
    return self.codebooks[m, codes].reshape(codes.shape[0], self.dim)

  def lookup(self, ids: np.ndarray) -> np.ndarray:
    """numpy reference of `CodebookEmbed`: float32 ``[..., dim]`` rows of int ``ids [...]``.

    Ids outside ``[0, vocab_size)`` take the OOV id's row (``vocab_size - 1``, the schema's OOV
    id), as the layer does (`mec_jax.ids.host_ids`: int64 ids are checked before the cast; float
    ids raise `DataError`). Touches only the looked-up rows, so it serves single requests.
    """
    ids = host_ids(ids, self.vocab_size, self.vocab_size - 1, f"table {self.name!r}")
    codes = self.codes[ids].astype(np.int64)  # [..., M]
    rows = self.codebooks[np.arange(self.num_subspaces), codes]  # [..., M, s]
    return rows.reshape(*ids.shape, self.dim)

  def first_order_weights(self) -> np.ndarray | None:
    """float32 ``[vocab_size]`` or None."""
    if self.first_order is None:
      return None
    m = np.arange(self.num_subspaces)[None, :]
    return self.first_order[m, self.codes].sum(axis=1)

  def nbytes(self, packed: bool = True) -> int:
    """Embedding bytes: codes (bit-packed or as stored) plus float32 codebooks.

    The first-order codebook is counted apart (`first_order_nbytes`), as for every method.
    """
    codes = packed_nbytes(self.vocab_size, self.num_subspaces, self.codebook_size)
    return int((codes if packed else self.codes.nbytes) + self.codebooks.nbytes)

  def first_order_nbytes(self) -> int:
    """Bytes of the first-order weights a backbone with first-order terms gives this field:
    one float32 per code per sub-space (``[M, K]``), whether or not stage B fit them."""
    return self.num_subspaces * self.codebook_size * 4

  def code_usage(self) -> np.ndarray:
    """float64 ``[M, K]``: how many ids use each code in each sub-space."""
    return code_usage(self.codes, self.codebook_size)

  def knobs(self) -> dict:
    """The report's entries for this field (DESIGN §7 ``compressed_fields``)."""
    return {
      "num_subspaces": self.num_subspaces,
      "codebook_size": self.codebook_size,
      "code_usage_entropy": float(np.mean(usage_entropy(self.codes, self.codebook_size))),
      "variant": self.variant,
      **{k: v for k, v in self.stats.items() if isinstance(v, (int, float, str))},
    }

  def _arrays(self) -> dict[str, np.ndarray]:
    arrays = {"codes": self.codes, "codebooks": self.codebooks}
    if self.first_order is not None:
      arrays["first_order"] = self.first_order
    if self.usage_entropy is not None:
      arrays["usage_entropy"] = np.asarray(self.usage_entropy, np.float32)
    return arrays

  def save(self, path: str) -> None:
    """Writes one ``.npz`` atomically (temp file + rename).

    Besides the arrays, ``meta`` (JSON bytes) holds the name, variant and stats and, under
    ``sha256``, the SHA-256 of every array and of that meta (`mec_jax.digest`), which `load`
    verifies.
    """
    arrays = self._arrays()
    meta = json.loads(json.dumps({"name": self.name, "variant": self.variant, "stats": self.stats}))
    digests = {name: digest.array_sha256(array) for name, array in arrays.items()}
    digests["meta"] = digest.json_sha256(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta | {"sha256": digests}).encode(), np.uint8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> CompressedTable:
    """Reads a table written by `save` and verifies it.

    Files written before digests were recorded (no ``sha256`` in ``meta``) still load, with
    every check below except the digests.

    Raises:
      ArtifactError: naming ``path`` when the file is missing, not an ``.npz`` archive
        (garbage bytes, truncated), lacks an array, holds an array or meta whose SHA-256
        differs from the recorded one, holds arrays that do not form a table, no rows, or
        NaN/Inf codebooks or first-order weights.
    """
    arrays = read_npz(path, ("codes", "codebooks", "meta"), "compressed table")
    try:
      meta = json.loads(bytes(arrays.pop("meta")).decode())
      if not isinstance(meta, dict) or not set(meta) <= META_KEYS | {"sha256"}:
        raise ValueError(f"unexpected meta {str(meta)[:80]!r}")
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
      raise ArtifactError(f"{path}: compressed table has unreadable meta ({err})") from err
    digests = meta.pop("sha256", None)
    if digests is not None:
      _verify(path, arrays, meta, digests)
    if not np.issubdtype(arrays["codes"].dtype, np.integer):
      raise ArtifactError(f"{path}: codes must be integers, got {arrays['codes'].dtype}")
    try:
      table = cls(
        codes=arrays["codes"],
        codebooks=arrays["codebooks"],
        first_order=arrays.get("first_order"),
        usage_entropy=arrays.get("usage_entropy"),
        **meta,
      )
    except ValueError as err:
      raise ArtifactError(f"{path}: {err}; delete it to recompute") from err
    for name in ("codebooks", "first_order"):
      array = getattr(table, name)
      if array is not None and not np.isfinite(array).all():
        raise ArtifactError(
          f"{path}: {name} hold {int((~np.isfinite(array)).sum())} NaN/Inf values; delete it "
          "to recompute"
        )
    return table


def _verify(path: str, arrays: dict, meta: dict, digests) -> None:
  """Raises `ArtifactError` unless ``arrays`` and ``meta`` match the recorded ``digests``."""
  if not isinstance(digests, dict) or set(digests) != set(arrays) | {"meta"}:
    recorded = sorted(digests) if isinstance(digests, dict) else digests
    raise ArtifactError(
      f"{path}: compressed table holds arrays {sorted(arrays)} but records digests of "
      f"{recorded}; delete it to recompute"
    )
  actual = {name: digest.array_sha256(array) for name, array in arrays.items()}
  actual["meta"] = digest.json_sha256(meta)
  for name in sorted(actual):
    if digests[name] != actual[name]:
      raise ArtifactError(
        f"{path}: {name!r} differs from its recorded SHA-256 (damaged or edited after it was "
        "written); delete it to recompute"
      )


def read_npz(path: str, required: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
  """All arrays of the ``.npz`` file at ``path``, read into memory (no pickles).

  Args:
    path: the file.
    required: names of arrays the file must hold.
    what: what the file is, for messages (``"compressed table"``, ``"stage-A table"``).

  Raises:
    ArtifactError: naming ``path`` and the damage: missing file, not an ``.npz`` archive
      (garbage bytes, truncated), an unreadable member, or missing arrays.
  """
  if not os.path.isfile(path):
    raise ArtifactError(f"{path}: no {what} here (file missing)")
  try:
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
      raise ValueError("a single .npy array, not an .npz archive")
    with data:
      arrays = {name: data[name] for name in data.files}
  except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
    reason = f"{type(err).__name__}: {' '.join(str(err).split())}"
    if "pickled" in reason:  # numpy's guess for bytes that are no array format at all
      reason = "not an .npz archive: garbage bytes?"
    raise ArtifactError(f"{path}: {what} is damaged ({reason}); delete it to recompute") from err
  missing = [name for name in required if name not in arrays]
  if missing:
    raise ArtifactError(
      f"{path}: {what} lacks arrays {missing} (holds {sorted(arrays)}); delete it to recompute"
    )
  return arrays
