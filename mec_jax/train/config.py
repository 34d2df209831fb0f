"""`TrainConfig`: the settings of `mec_jax.train.fit` (``config.train``)."""

from __future__ import annotations

import dataclasses

from mec_jax.configs.default import defaults_of
from mec_jax.errors import ConfigError
from mec_jax.train import metrics as metrics_lib
from mec_jax.train.row_optimizers import SPARSE_OPTIMIZERS


@dataclasses.dataclass(frozen=True)
@defaults_of("train")
class TrainConfig:
  """Training settings: the keys of ``config.train``, with its defaults (configs/default.py,
  where each is explained), and ``embedding_regularizer`` (``config.model``'s)."""

  batch_size: int
  eval_batch_size: int
  epochs: int
  learning_rate: float
  grad_clip_norm: float
  weight_decay: float
  patience: int
  lr_decay: float
  monitor: str
  seed: int
  checkpoint_every_steps: int
  log_every_steps: int
  progress: bool
  sparse_min_rows: int  # Embed tables this large train row-sparse (0: none)
  sparse_optimizer: str  # row_optimizers.SPARSE_OPTIMIZERS
  sparse_learning_rate: float  # rate of the sparse tables; 0: their dense rate
  model_axis_size: int  # k > 1: ('data', 'model') mesh (N/k, k), sparse rows split on 'model'
  embedding_l2: float  # (λ/2)·||row||² per unique touched full-table row (train.losses)
  net_l2: float  # (λ/2)·||θ||² on the parameters outside model.embedding
  embedding_regularizer: float = 0.0  # from config.model.embedding_regularizer

  def __post_init__(self):
    for key in ("batch_size", "eval_batch_size", "epochs", "log_every_steps"):
      if getattr(self, key) < 1:
        raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
    if self.patience < 1:
      raise ValueError(f"train.patience must be >= 1, got {self.patience}")
    if not 0 < self.lr_decay <= 1:
      raise ValueError(f"train.lr_decay must be in (0, 1], got {self.lr_decay}")
    if self.monitor not in metrics_lib.MONITORS:
      raise ValueError(f"train.monitor={self.monitor!r}; expected one of {metrics_lib.MONITORS}")
    if self.sparse_optimizer not in SPARSE_OPTIMIZERS:
      raise ConfigError(
        f"train.sparse_optimizer={self.sparse_optimizer!r}; expected one of {SPARSE_OPTIMIZERS}"
      )
    if self.sparse_min_rows < 0 or not self.sparse_learning_rate >= 0:
      raise ConfigError(
        f"train.sparse_min_rows={self.sparse_min_rows}, train.sparse_learning_rate="
        f"{self.sparse_learning_rate}; both must be >= 0"
      )
    if not (self.embedding_l2 >= 0 and self.net_l2 >= 0):
      raise ConfigError(
        f"train.embedding_l2={self.embedding_l2}, train.net_l2={self.net_l2}; both must be >= 0"
      )
    if self.model_axis_size < 1:
      raise ConfigError(f"train.model_axis_size={self.model_axis_size}; expected >= 1")

  @classmethod
  def from_config(cls, config, **overrides) -> TrainConfig:
    """From the root config (``train`` + ``model.embedding_regularizer``) or ``config.train``.

    Keys of ``config.train`` that are not fields here are ignored; ``overrides`` win.
    """
    train = config.train if "train" in config else config
    kwargs = {f.name: train[f.name] for f in dataclasses.fields(cls) if f.name in train}
    if "model" in config and "embedding_regularizer" in config.model:
      kwargs["embedding_regularizer"] = float(config.model.embedding_regularizer)
    return cls(**(kwargs | overrides))
