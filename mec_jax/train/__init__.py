"""Training loop, steps, metrics, checkpointing, mesh.

``fit(model, splits, train_config=TrainConfig.from_config(config), workdir=DIR, name="pretrain")``
trains any backbone; see `mec_jax.train.loop`.
"""

from mec_jax.train.loop import (
  FitResult,
  NonFiniteLossError,
  TrainConfig,
  evaluate_splits,
  fit,
  load_result,
  result_path,
)

__all__ = [
  "FitResult",
  "NonFiniteLossError",
  "TrainConfig",
  "evaluate_splits",
  "fit",
  "load_result",
  "result_path",
]
