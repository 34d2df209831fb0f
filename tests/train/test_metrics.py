"""AUC and logloss against scikit-learn and a brute-force pair count."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mec_jax.train import metrics


def _brute_force_auc(labels, scores):
  pos, neg = scores[labels == 1], scores[labels == 0]
  diff = pos[:, None] - neg[None, :]
  return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def test_auc_with_ties_equals_sklearn_and_pair_count():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 500).astype(np.float32)
  scores = np.round(rng.random(500) * 0.5 + 0.3 * labels, 1)  # few distinct values: many ties
  value = metrics.auc(labels, scores)
  assert value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
  assert value == pytest.approx(_brute_force_auc(labels, scores), abs=1e-12)


def test_logloss_is_clipped_and_exact():
  labels = np.array([1.0, 0.0, 1.0, 0.0])
  probs = np.array([0.9, 0.2, 0.0, 1.0])  # two certain mistakes
  expected = -np.mean([np.log(0.9), np.log(0.8), np.log(metrics.EPS), np.log(metrics.EPS)])
  assert metrics.logloss(labels, probs) == pytest.approx(expected, rel=1e-6)
  assert np.isfinite(metrics.logloss(labels, probs))


def test_evaluate_and_monitor():
  labels = np.array([0, 1, 0, 1])
  probs = np.array([0.1, 0.8, 0.4, 0.6])
  result = metrics.evaluate(labels, probs)
  assert result["auc"] == 1.0
  assert metrics.monitor_score(result, "auc_minus_logloss") == pytest.approx(
    1.0 - result["logloss"]
  )
  assert metrics.monitor_score(result, "logloss") == -result["logloss"]
  with pytest.raises(ValueError, match="train.monitor"):
    metrics.monitor_score(result, "gauc")


def test_metric_errors_name_the_problem():
  with pytest.raises(ValueError, match="valid: AUC is undefined, every label is 1"):
    metrics.auc(np.ones(4), np.random.rand(4), "valid")
  with pytest.raises(ValueError, match="NaN or inf"):
    metrics.logloss(np.array([0, 1]), np.array([0.5, np.nan]))
  with pytest.raises(ValueError, match="3 labels but 2 predictions"):
    metrics.auc(np.array([0, 1, 1]), np.array([0.5, 0.2]))
  with pytest.raises(ValueError, match="labels must be 0/1"):
    metrics.auc(np.array([0, 2]), np.array([0.5, 0.2]))
