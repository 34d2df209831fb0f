"""`FitResult` and its JSON file ``<workdir>/<name>/result.json``."""

from __future__ import annotations

import dataclasses
import json
import os

from mec_jax.errors import ArtifactError, one_line


@dataclasses.dataclass
class FitResult:
  """Outcome of `mec_jax.train.loop.fit`.

  Attributes:
    valid: ``{"auc", "logloss"}`` on the validation split at the best epoch.
    test: ``{"auc", "logloss"}`` of the restored best state on the test split (``{}`` if none).
    history: one dict per epoch: epoch, step, train_loss, valid_auc, valid_logloss, score,
      improved, lr, seconds.
    best_epoch: 1-based epoch of the best validation score.
    best_step: global train step of the best checkpoint.
    steps: train steps run in total.
  """

  valid: dict
  test: dict
  history: list
  best_epoch: int
  best_step: int
  steps: int

  def metrics(self) -> dict[str, float]:
    """Flat ``{"valid_auc", "valid_logloss", "test_auc", "test_logloss"}`` (those available)."""
    out = {f"valid_{k}": float(v) for k, v in self.valid.items()}
    return out | {f"test_{k}": float(v) for k, v in self.test.items()}

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, data: dict) -> FitResult:
    return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def result_path(workdir: str, name: str) -> str:
  """Where `fit` writes the result of run ``name``."""
  return os.path.join(os.path.abspath(workdir), name, "result.json")


def load_result(workdir: str, name: str) -> FitResult:
  path = result_path(workdir, name)
  if not os.path.exists(path):
    raise ValueError(f"{path}: no finished run {name!r} here")
  try:
    with open(path) as fh:
      return FitResult.from_dict(json.load(fh))
  except (ValueError, KeyError, TypeError) as err:  # empty, cut short, edited by hand
    raise ArtifactError(
      f"{path}: damaged result of run {name!r} ({type(err).__name__}: {one_line(err)}); "
      f"delete {os.path.dirname(path)} to retrain it"
    ) from err


def write_json_atomic(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as fh:
    json.dump(obj, fh, indent=2)
  os.replace(tmp, path)
