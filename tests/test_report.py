"""`mec_jax.report`: which compressed model a run keeps."""

import pytest

from mec_jax.report import kept_source

# finetune: higher AUC, much higher logloss; swap: lower AUC, lower logloss.
CANDIDATES = {
  "finetune": {"valid_auc": 0.80, "valid_logloss": 0.60},
  "swap": {"valid_auc": 0.79, "valid_logloss": 0.45},
}


@pytest.mark.parametrize(
  "monitor, kept",
  [("auc_minus_logloss", "swap"), ("auc", "finetune"), ("logloss", "swap")],
)
def test_the_kept_model_is_the_best_by_train_monitor(monitor, kept):
  assert kept_source(CANDIDATES, monitor) == kept


def test_ties_keep_the_first_candidate():
  same = {"finetune": CANDIDATES["swap"], "swap": dict(CANDIDATES["swap"])}
  assert kept_source(same, "auc") == "finetune"
