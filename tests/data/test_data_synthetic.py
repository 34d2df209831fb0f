"""Synthetic generator: determinism, calibrated click rate, planted structure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mec_jax.data import load_dataset
from mec_jax.data.synthetic import SyntheticSpec, calibrate_intercept, generate

SPEC = SyntheticSpec(num_rows=20_000, vocab_sizes=(2_000, 300, 10), num_numeric=2, seed=3)


@pytest.fixture(scope="module")
def drawn():
  return generate(SPEC)


def test_same_seed_same_rows_other_seed_other_rows(drawn):
  frame, probability, _ = drawn
  again, again_prob, _ = generate(SPEC)
  pd.testing.assert_frame_equal(frame, again)
  np.testing.assert_array_equal(probability, again_prob)
  other, _, _ = generate(dataclasses.replace(SPEC, seed=4))
  assert not frame["cat0"].equals(other["cat0"])


def test_click_rate_is_calibrated(drawn):
  frame, probability, model = drawn
  assert probability.mean() == pytest.approx(SPEC.click_rate, abs=1e-6)
  # Bernoulli labels: std of the mean is sqrt(0.16 / 20000) ~ 0.0028.
  assert abs(frame["label"].mean() - SPEC.click_rate) < 0.012
  assert np.isfinite(model.intercept)
  low = generate(dataclasses.replace(SPEC, click_rate=0.03, num_rows=5000))[1]
  assert low.mean() == pytest.approx(0.03, abs=1e-6)


def test_calibrate_intercept_matches_a_root_finder():
  logit = np.random.default_rng(0).normal(0, 2, 1000)
  b = calibrate_intercept(logit, 0.1)
  assert np.mean(1 / (1 + np.exp(-(logit + b)))) == pytest.approx(0.1, abs=1e-9)


def test_popularity_is_zipf_and_columns_are_raw(drawn):
  frame, _, model = drawn
  assert list(frame.columns) == ["cat0", "cat1", "cat2", "num0", "num1", "label"]
  counts = np.bincount(frame["cat0"], minlength=2000)
  top = np.argsort(-model.popularity[0])[:5]
  np.testing.assert_allclose(counts[top] / len(frame), model.popularity[0][top], atol=0.01)
  ratio = model.popularity[0][top[0]] / model.popularity[0][top[1]]
  assert ratio == pytest.approx(2**SPEC.zipf_exponent)
  assert top[0] != 0 or top[1] != 1  # raw ids are permuted, not sorted by popularity
  missing = frame["num0"].isna().mean()
  assert 0.07 < missing < 0.13 and (frame["num0"].dropna() >= 0).all()


def test_planted_signal_and_cluster_structure(drawn):
  frame, probability, model = drawn
  assert roc_auc_score(frame["label"], probability) > 0.75  # learnable signal
  latent, cluster = model.latent[0], model.cluster[0]
  centre = np.stack([latent[cluster == k].mean(0) for k in range(SPEC.num_clusters)])
  within = np.linalg.norm(latent - centre[cluster], axis=1).mean()
  between = np.linalg.norm(centre[:, None] - centre[None], axis=-1).mean()
  assert within < 0.5 * between


def test_load_dataset_encodes_synthetic_with_train_vocab(data_config):
  data_config.synthetic.num_rows = 6000
  data_config.synthetic.vocab_sizes = (5000, 50)
  dataset = load_dataset(data_config, "")
  fm = dataset.feature_map
  assert fm.names == ["cat0", "cat1", "num0", "num1"]
  assert [f.kind for f in fm.fields] == ["categorical"] * 2 + ["numeric"] * 2
  # Long tail: many of the 5000 values never reach train, so the vocab is smaller, and some
  # test rows hold values seen only outside train -> OOV.
  assert fm.vocab_sizes[0] < 5000
  assert (dataset.splits["test"]["ids"][:, 0] == fm.fields[0].oov_id).any()
  assert fm.fields[0].counts[-1] == 0  # min_count 1: no train value is folded into OOV


def test_per_field_zipf_exponents_set_each_fields_skew():
  spec = SyntheticSpec(
    num_rows=40_000, vocab_sizes=(50_000, 50_000, 50), zipf_exponents=(0.5, 1.1, 1.0), seed=1
  )
  frame, _, model = generate(spec)
  for f, (vocab, a) in enumerate(zip(spec.vocab_sizes, spec.exponents, strict=True)):
    weights = np.arange(1, vocab + 1, dtype=np.float64) ** -a
    np.testing.assert_allclose(np.sort(model.popularity[f])[::-1], weights / weights.sum())
    # Realized distinct values vs the expectation sum_v 1 - (1 - p_v)^n (within 2%).
    expected = np.sum(1.0 - (1.0 - model.popularity[f]) ** spec.num_rows)
    assert frame[f"cat{f}"].nunique() == pytest.approx(expected, rel=0.02)
  assert frame["cat0"].nunique() > 3 * frame["cat1"].nunique()  # same vocab, lower skew
  # Without per-field exponents every field uses zipf_exponent: the draws are those of before.
  same = SyntheticSpec(num_rows=2_000, vocab_sizes=(300, 20), zipf_exponents=(1.1, 1.1))
  pd.testing.assert_frame_equal(
    generate(same)[0], generate(dataclasses.replace(same, zipf_exponents=()))[0]
  )


def test_zipf_exponents_must_match_the_fields(data_config):
  data_config.synthetic.zipf_exponents = (0.5,)
  with pytest.raises(ValueError, match=r"zipf_exponents: invalid value \(0.5,\).*one exponent"):
    SyntheticSpec.from_config(data_config.synthetic)
  data_config.synthetic.vocab_sizes = (100,)
  assert SyntheticSpec.from_config(data_config.synthetic).exponents == (0.5,)
