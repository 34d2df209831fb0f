"""Exact evaluation metrics over a whole split: ROC AUC and log loss (scikit-learn)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss as _sk_log_loss
from sklearn.metrics import roc_auc_score

# Probabilities are clipped to [EPS, 1 - EPS] so a confident mistake costs a finite ~16.1 nats.
EPS = 1e-7

MONITORS = ("auc_minus_logloss", "auc", "logloss")


def _check(labels: np.ndarray, probs: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
  labels = np.asarray(labels, np.float64).reshape(-1)
  probs = np.asarray(probs, np.float64).reshape(-1)
  if labels.shape != probs.shape:
    raise ValueError(f"{name}: {labels.size} labels but {probs.size} predictions")
  if labels.size == 0:
    raise ValueError(f"{name}: no rows to evaluate")
  if not np.all(np.isfinite(probs)):
    raise ValueError(f"{name}: predictions contain NaN or inf")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueError(f"{name}: labels must be 0/1, got values {np.unique(labels)[:5]}")
  return labels, probs


def auc(labels: np.ndarray, probs: np.ndarray, name: str = "auc") -> float:
  """Exact ROC AUC (tied scores count one half), via ``sklearn.metrics.roc_auc_score``.

  Raises:
    ValueError: if all labels are equal (AUC undefined), or on bad shapes/values.
  """
  labels, probs = _check(labels, probs, name)
  if labels.min() == labels.max():
    raise ValueError(f"{name}: AUC is undefined, every label is {labels[0]:g}")
  return float(roc_auc_score(labels, probs))


def logloss(labels: np.ndarray, probs: np.ndarray, name: str = "logloss") -> float:
  """Mean binary cross-entropy in nats with probabilities clipped to ``[EPS, 1 - EPS]``."""
  labels, probs = _check(labels, probs, name)
  return float(_sk_log_loss(labels, np.clip(probs, EPS, 1.0 - EPS), labels=[0.0, 1.0]))


def evaluate(labels: np.ndarray, probs: np.ndarray, name: str = "split") -> dict[str, float]:
  """``{"auc", "logloss"}`` of one split."""
  return {"auc": auc(labels, probs, name), "logloss": logloss(labels, probs, name)}


def monitor_score(metrics: dict[str, float], monitor: str) -> float:
  """Validation score to maximize: ``auc - logloss`` (default), ``auc`` or ``-logloss``."""
  if monitor == "auc_minus_logloss":
    return metrics["auc"] - metrics["logloss"]
  if monitor == "auc":
    return metrics["auc"]
  if monitor == "logloss":
    return -metrics["logloss"]
  raise ValueError(f"train.monitor={monitor!r}; expected one of {MONITORS}")
