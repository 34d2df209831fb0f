"""The paired bootstrap of test-AUC differences, against scikit-learn's weighted AUC."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mec_jax.experiments import significance


def _data(rows=3000, seed=0):
  rng = np.random.default_rng(seed)
  labels = (rng.random(rows) < 0.3).astype(np.float32)
  signal = labels + rng.normal(0, 1.2, rows)
  return rng, labels, signal


def test_auc_equals_sklearn_with_weights_and_ties():
  rng, labels, signal = _data()
  tied = np.round(signal, 1)  # many tied scores
  for scores in (signal, tied):
    sorted_once = significance._SortedScores(scores, labels)  # what each resample's AUC uses
    assert sorted_once.auc(np.ones_like(labels)) == pytest.approx(
      roc_auc_score(labels, scores), abs=1e-12
    )
    weights = rng.poisson(1.0, labels.shape).astype(np.float64)  # a bootstrap resample's weights
    expected = roc_auc_score(labels, scores, sample_weight=weights)
    assert sorted_once.auc(weights) == pytest.approx(expected, abs=1e-12)


def test_paired_bootstrap_of_a_model_with_itself_is_zero():
  _, labels, signal = _data()
  p = significance.paired_bootstrap(signal, signal, labels, resamples=50)
  assert p.diff == 0 and p.std == 0 and (p.low, p.high) == (0, 0)
  assert not p.resolved


def test_paired_bootstrap_resolves_a_real_gap_and_not_noise():
  rng, labels, signal = _data(rows=20000)
  better = signal + 0.8 * labels  # more signal: a clearly higher AUC
  noisy = signal + rng.normal(0, 1e-3, signal.shape)  # the same model up to tiny noise
  gap = significance.paired_bootstrap(better, signal, labels, resamples=200)
  assert gap.diff == pytest.approx(roc_auc_score(labels, better) - roc_auc_score(labels, signal))
  assert gap.resolved and gap.low > 0 and gap.low < gap.diff < gap.high
  same = significance.paired_bootstrap(noisy, signal, labels, resamples=200)
  assert abs(same.diff) < 3 * same.std + 1e-9
  # pairing: the difference varies far less than either AUC does over the same resamples
  spread_alone = np.std(
    [
      significance._SortedScores(signal, labels).auc(
        np.random.default_rng(s).poisson(1.0, labels.shape).astype(np.float64)
      )
      for s in range(50)
    ]
  )
  assert gap.std < spread_alone


def test_paired_bootstrap_std_matches_a_direct_bootstrap():
  """The sorted-once resampling gives the spread a direct sklearn bootstrap gives."""
  rng, labels, signal = _data(rows=4000, seed=1)
  other = signal + rng.normal(0, 0.8, signal.shape)
  p = significance.paired_bootstrap(signal, other, labels, resamples=400, seed=3)
  direct = []
  for s in range(400):
    w = np.random.default_rng(1000 + s).poisson(1.0, labels.shape)
    direct.append(
      roc_auc_score(labels, signal, sample_weight=w) - roc_auc_score(labels, other, sample_weight=w)
    )
  assert p.std == pytest.approx(np.std(direct, ddof=1), rel=0.25)  # two Monte Carlo estimates


@pytest.mark.parametrize(
  "a, b, y, match",
  [
    (np.zeros(3), np.zeros(4), np.array([0, 1, 0]), "one length"),
    (np.array([0.0, np.nan, 1.0]), np.zeros(3), np.array([0, 1, 0]), "scores_a: .*NaN or inf"),
    (np.zeros(3), np.zeros(3), np.ones(3), "scores_a: AUC is undefined, every label is 1"),
    (np.zeros(3), np.zeros(3), np.array([0, 2, 1]), "labels must be 0/1"),
  ],
)
def test_paired_bootstrap_refuses_bad_input(a, b, y, match):
  with pytest.raises(ValueError, match=match):
    significance.paired_bootstrap(a, b, y, resamples=10)


@pytest.fixture(scope="module")
def paired_auc():
  """bench/paired_auc.py as a module."""
  path = Path(__file__).resolve().parents[2] / "bench" / "paired_auc.py"
  spec = importlib.util.spec_from_file_location("paired_auc", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_bench_paired_auc_scores_the_exports_as_their_reports_say(
  paired_auc, finished_quick, capsys
):
  """bench/paired_auc.py on a finished run: each export's AUC equals its report's, a run paired
  with itself differs by exactly 0, and its full model is scored too."""
  _, workdir, report = finished_quick
  paired_auc.main([workdir, workdir, "--resamples=20"])
  out = capsys.readouterr().out
  assert f"{report['compressed']['test_auc']:.6f} (report " in out
  assert f"{report['full']['test_auc']:.6f} (report " in out
  rows = re.findall(r"^\s*(\d+)\s+(\d+)\s+([+-]\d\.\d+) .* (yes|no) \(", out, re.MULTILINE)
  assert [r[:2] for r in rows] == [("1", "0"), ("0", "2")]
  assert float(rows[0][2]) == 0 and rows[0][3] == "no"


def test_bench_paired_auc_refuses_a_directory_that_is_no_run(paired_auc, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    paired_auc.main([str(tmp_path), str(tmp_path)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "config.json" in err and "finished pipeline workdir" in err and "Traceback" not in err
