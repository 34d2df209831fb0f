"""`QuantizeSettings` (stage B's knobs, mirroring ``config.quantize``) and input validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from mec_jax.compression.autoencoder import ENCODERS  # `MECQuantizer`'s encoder structures
from mec_jax.configs.default import defaults_of

VARIANTS = ("mec", "reference", "no_pwr", "no_contrastive", "no_balance", "kmeans")
SELECTIONS = ("balance", "error")  # how `training.train_quantizer` picks the epoch that ships
MAX_CODEBOOK_SIZE = 65536  # codes are stored as uint8 (K <= 256) or uint16 (K <= 65536)


@dataclasses.dataclass(frozen=True)
@defaults_of("quantize")
class QuantizeSettings:
  """How one table is quantized: the keys of ``config.quantize``, with its defaults
  (configs/default.py).

  Attributes:
    variant: ``mec`` | ``reference`` | ``no_pwr`` | ``no_contrastive`` | ``no_balance`` | ``kmeans``.
    num_subspaces: M, sub-vectors per row.
    codebook_size: K, codes per sub-space, 2 to `MAX_CODEBOOK_SIZE` (codes are stored as uint16
      at most).
    latent_dim: encoder output size ``M * s``; 0 means the table's dim.
    encoder: ``dense`` | ``block`` | ``none``, the quantizer's encoder structure (see
      `autoencoder.MECQuantizer`); ``reference`` always uses ``dense``.
    epochs: maximum training epochs (early stopping usually ends sooner).
    rows_per_epoch: rows one epoch trains on, drawn afresh each epoch (0: every training row),
      so an epoch costs the same on a 32M-row table as on a small one.
    batch_size: rows per step (rounded up to a multiple of the device count).
    learning_rate: Adam step size.
    patience: epochs without a better kept epoch (see ``selection``) before stopping.
    selection: which epoch ships. ``balance``: the one with the most even code usage (usage
      entropy over the refit sample) among the epochs whose held-out shipped error is at most
      ``(1 + selection_tolerance)`` times that of the k-means start (epoch 0), so the artifact is
      never worse than its k-means start beyond the tolerance on held-out rows; ``error``: the lowest held-out shipped error.
      Near a k-means optimum every move costs weighted error, so ``error`` keeps the start or an
      epoch that is barely different (bench/RESULTS.md, "Code balance").
    selection_tolerance: relative held-out error above the k-means start that ``balance``
      selection accepts. The default 0.01 also lets training run on past epochs slightly
      worse than the start (patience counts epochs without a new kept one), which on some
      tables ends below the start's error (bench/RESULTS.md, "Code balance").
    holdout_fraction: rows held out of training to drive early stopping.
    kmeans_iters: Lloyd iterations of the k-means initialization (and of ``kmeans``).
    weighted_sampling: draw training rows with probability proportional to their popularity
      weight and average the loss unweighted, instead of weighting the loss.
    commitment: beta of the VQ commitment term.
    lambda_rec, lambda_vq, lambda_bal, lambda_con: loss weights. The defaults of
      ``lambda_bal``, ``lambda_con`` and ``balance_temperature`` were tuned on the Zipf table of
      ``bench/quantizer.py`` (30 epochs): a strong balance term both evens code usage and
      curbs the encoder drift that otherwise costs table-space reconstruction.
    balance_temperature: tau_a of the soft assignment in the balance regularizer, in units of
      squared distance in the normalized table (unit global variance).
    contrastive_temperature: tau_c of InfoNCE.
    num_negatives: negatives per row in the contrastive term.
    seed: PRNG seed used when no key is passed to `quantize_table`.
  """

  variant: str
  num_subspaces: int
  codebook_size: int
  latent_dim: int
  encoder: str
  epochs: int
  rows_per_epoch: int
  batch_size: int
  learning_rate: float
  patience: int
  selection: str
  selection_tolerance: float
  holdout_fraction: float
  kmeans_iters: int
  weighted_sampling: bool
  commitment: float
  lambda_rec: float
  lambda_vq: float
  lambda_bal: float
  lambda_con: float
  balance_temperature: float
  contrastive_temperature: float
  num_negatives: int
  seed: int

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"quantize.variant must be one of {VARIANTS}, got {self.variant!r}")
    _at_least(self, "num_subspaces", 1)
    _at_least(self, "codebook_size", 2)
    if self.codebook_size > MAX_CODEBOOK_SIZE:
      raise ValueError(
        f"quantize.codebook_size must be <= {MAX_CODEBOOK_SIZE} (codes are stored as uint16), "
        f"got {self.codebook_size}"
      )
    _at_least(self, "latent_dim", 0)
    if self.encoder not in ENCODERS:
      raise ValueError(f"quantize.encoder must be one of {ENCODERS}, got {self.encoder!r}")
    if self.selection not in SELECTIONS:
      raise ValueError(f"quantize.selection must be one of {SELECTIONS}, got {self.selection!r}")
    _at_least(self, "epochs", 0)
    _at_least(self, "rows_per_epoch", 0)
    _at_least(self, "batch_size", 1)
    _at_least(self, "patience", 1)
    _at_least(self, "kmeans_iters", 0)
    _at_least(self, "num_negatives", 1)
    for name in ("learning_rate", "balance_temperature", "contrastive_temperature"):
      if not getattr(self, name) > 0:
        raise ValueError(f"quantize.{name} must be > 0, got {getattr(self, name)}")
    for name in (
      "selection_tolerance",
      "commitment",
      "lambda_rec",
      "lambda_vq",
      "lambda_bal",
      "lambda_con",
    ):
      if not getattr(self, name) >= 0:
        raise ValueError(f"quantize.{name} must be >= 0, got {getattr(self, name)}")
    if not 0.0 <= self.holdout_fraction < 1.0:
      raise ValueError(f"quantize.holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
    if self.encoder == "none" and self.latent_dim and self.variant not in ("reference", "kmeans"):
      raise ValueError(
        f"quantize.encoder 'none' trains in table space; quantize.latent_dim must be 0, "
        f"got {self.latent_dim}"
      )
    if self.latent_dim and self.latent_dim % self.num_subspaces:
      raise ValueError(
        f"quantize.latent_dim {self.latent_dim} is not divisible by "
        f"quantize.num_subspaces {self.num_subspaces}"
      )

  @classmethod
  def from_config(cls, config: Mapping[str, Any] | Any) -> QuantizeSettings:
    """Builds settings from ``config.quantize`` (a ConfigDict or any mapping); unknown keys
    such as ``min_vocab`` (the pipeline's business) are ignored."""
    items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    names = {f.name: f.type for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in items.items():
      if name in names:
        default = getattr(cls, name)
        kwargs[name] = type(default)(value) if not isinstance(default, bool) else bool(value)
    return cls(**kwargs)

  def resolved_latent_dim(self, dim: int) -> int:
    return self.latent_dim or dim

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _at_least(settings: QuantizeSettings, name: str, low: int) -> None:
  value = getattr(settings, name)
  if not isinstance(value, (int, np.integer)) or value < low:
    raise ValueError(f"quantize.{name} must be an integer >= {low}, got {value!r}")


def check_table(table, counts, settings: QuantizeSettings, name: str = "") -> tuple:
  """Validates a table, its counts and the settings that will quantize it.

  Returns:
    ``(table float32 [V, d], counts int64 [V])`` as numpy arrays.
  """
  label = f"table {name!r}" if name else "table"
  table = np.asarray(table)
  if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
    raise ValueError(f"{label}: expected a non-empty [vocab_size, dim] array, got {table.shape}")
  table = table.astype(np.float32, copy=False)
  _check_finite_rows(table, label)
  vocab_size, dim = table.shape
  latent = settings.resolved_latent_dim(dim)
  if latent % settings.num_subspaces:
    raise ValueError(
      f"{label}: latent dim {latent} (quantize.latent_dim or the table dim) is not divisible "
      f"by quantize.num_subspaces {settings.num_subspaces}"
    )
  if settings.variant == "kmeans" and latent != dim:
    raise ValueError(f"{label}: variant 'kmeans' has no encoder; latent_dim must be 0 or {dim}")
  counts = np.asarray(counts)
  if counts.shape != (vocab_size,):
    raise ValueError(f"{label}: counts must have shape ({vocab_size},), got {counts.shape}")
  if counts.size and (not np.issubdtype(counts.dtype, np.number) or counts.min() < 0):
    raise ValueError(f"{label}: counts must be non-negative numbers")
  if not np.issubdtype(counts.dtype, np.integer):  # floats would be floored silently
    whole = np.isfinite(counts) & (counts == np.round(counts))
    if not whole.all():
      row = int(np.argmin(whole))
      raise ValueError(
        f"{label}: counts must be whole numbers (train occurrences), got {counts[row]!r} at "
        f"row {row}"
      )
  distinct = _distinct_rows_at_least(table, settings.codebook_size)
  if distinct < settings.codebook_size:
    raise ValueError(
      f"{label}: codebook_size {settings.codebook_size} is larger than the number of "
      f"distinct rows ({distinct})"
    )
  return table, counts.astype(np.int64)


def _check_finite_rows(table: np.ndarray, label: str, block_rows: int = 1 << 18) -> None:
  """Raises naming the first row with NaN/inf; checks blocks of rows, so the boolean mask never
  covers the whole table (a ``[V, d]`` mask is 1.3 GB at 32M x 40)."""
  bad_rows, first = 0, None
  for start in range(0, table.shape[0], block_rows):
    finite = np.isfinite(table[start : start + block_rows]).all(axis=1)
    if not finite.all():
      first = start + int(np.argmin(finite)) if first is None else first
      bad_rows += int((~finite).sum())
  if first is not None:
    raise ValueError(f"{label}: row {first} has NaN or inf values ({bad_rows} bad rows in all)")


def _distinct_rows_at_least(table: np.ndarray, needed: int) -> int:
  """Number of distinct rows, or any number >= ``needed`` once that many are found."""
  rows = np.ascontiguousarray(table).view(
    np.dtype((np.void, table.dtype.itemsize * table.shape[1]))
  )
  rows = rows.reshape(-1)
  # Most tables prove themselves on a prefix; the full unique runs only on degenerate ones.
  probe = min(rows.size, max(8 * needed, 4096))
  distinct = np.unique(rows[:probe]).size
  if distinct >= needed or probe == rows.size:
    return distinct
  return np.unique(rows).size
