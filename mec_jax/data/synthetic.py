"""Synthetic CTR data with planted structure: no download, deterministic by seed.

What is planted, and why:

  * **Zipf popularity.** In field ``f`` (vocab ``V_f``) the value of popularity rank ``r`` is
    drawn with probability proportional to ``r ** -a_f``, ``a_f`` the field's entry of
    ``zipf_exponents`` (or ``zipf_exponent`` for all). A per-field skew is what makes a Criteo-like
    mix: with ``a = 1.1`` a 1M-value field realizes only ~190k ids in 1.6M rows, while real hashed-id
    fields realize millions (``a ~ 0.5`` does: 2.5M of 4M in 4.8M rows). Ranks are mapped to raw ids by
    a random permutation, so the encoder's frequency ordering has real work to do. This is the
    long tail that makes MEC's popularity weights matter: a few values fill most rows, most
    values are rare (some never reach the train split and become OOV).
  * **Cluster structure.** Each value belongs to one of ``num_clusters`` clusters of its field;
    its latent vector is ``u_v = centre[cluster(v)] + cluster_spread * sigma * noise`` and its
    first-order weight ``w_v = bias[cluster(v)] + cluster_spread * noise``. A rare value thus
    behaves like the popular values of its cluster: a compressor that shares codes between
    similar rows loses little, which is exactly the premise of product-quantized embeddings.
  * **Planted logistic click model.**
    ``logit = b + sum_f w_f(v_f) / sqrt(F) + interaction_scale / sqrt(P) * sum_{f<g} <u_f, u_g>
    + sum_j beta_j z_j + noise_scale * eps``, with ``P`` the number of field pairs, ``z_j`` the
    standardized ``log1p`` of numeric feature ``j`` and ``eps ~ N(0, 1)``. Latent scales are set
    so each inner product has unit variance, so the interaction term has std ``interaction_scale``
    whatever the number of fields: an FM-family model can learn it, a linear one cannot fully.
    Popular values appear thousands of times, so a model can learn their parameters.
  * **Calibrated intercept.** ``b`` is found by bisection so that the mean click probability of
    the drawn rows equals ``click_rate``; labels are Bernoulli draws of those probabilities.
  * **Numeric features**: heavy-tailed counts ``floor(exp(N(1.5, 1.2)))`` with 10% missing, the
    shape of Criteo's I-fields, to exercise the numeric path.

The output is raw integer columns (and float numeric ones) that go through the same encoding as
any dataset, train-only vocabulary included.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from mec_jax.errors import ConfigError

_NUMERIC_MISSING = 0.1


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  """Generator settings (``config.data.synthetic``, documented in ``configs/default.py``)."""

  num_rows: int = 400_000
  vocab_sizes: tuple[int, ...] = (50_000, 20_000, 5_000, 1_000, 100, 20, 10, 5)
  num_numeric: int = 2
  zipf_exponent: float = 1.1
  zipf_exponents: tuple[float, ...] = ()  # one per field; () = zipf_exponent for every field
  latent_dim: int = 8
  num_clusters: int = 32
  cluster_spread: float = 0.3
  interaction_scale: float = 1.0
  noise_scale: float = 0.5
  click_rate: float = 0.2
  seed: int = 0

  def __post_init__(self):
    checks = {
      "num_rows": self.num_rows >= 1,
      "vocab_sizes": len(self.vocab_sizes) >= 1 and min(self.vocab_sizes) >= 1,
      "num_numeric": self.num_numeric >= 0,
      "zipf_exponent": self.zipf_exponent >= 0,
      "zipf_exponents": not self.zipf_exponents
      or (len(self.zipf_exponents) == len(self.vocab_sizes) and min(self.zipf_exponents) >= 0),
      "latent_dim": self.latent_dim >= 1,
      "num_clusters": self.num_clusters >= 1,
      "cluster_spread": self.cluster_spread >= 0,
      "noise_scale": self.noise_scale >= 0,
      "click_rate": 0 < self.click_rate < 1,
    }
    for key, ok in checks.items():
      if not ok:
        raise ConfigError(
          f"data.synthetic.{key}: invalid value {getattr(self, key)!r}"
          + (" (expected one exponent >= 0 per vocab size)" if key == "zipf_exponents" else "")
        )

  @classmethod
  def from_config(cls, synthetic_config) -> SyntheticSpec:
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in dict(synthetic_config).items() if k in fields}
    if "vocab_sizes" in values:
      values["vocab_sizes"] = tuple(int(v) for v in values["vocab_sizes"])
    if "zipf_exponents" in values:
      values["zipf_exponents"] = tuple(float(a) for a in values["zipf_exponents"])
    return cls(**values)

  @property
  def exponents(self) -> tuple[float, ...]:
    """The Zipf exponent of each categorical field."""
    return self.zipf_exponents or (self.zipf_exponent,) * len(self.vocab_sizes)

  @property
  def categorical_names(self) -> list[str]:
    return [f"cat{i}" for i in range(len(self.vocab_sizes))]

  @property
  def numeric_names(self) -> list[str]:
    return [f"num{i}" for i in range(self.num_numeric)]


@dataclasses.dataclass
class PlantedModel:
  """The ground truth behind the labels (per categorical field, indexed by raw value id).

  Attributes:
    popularity: per field float64 ``[V_f]`` sampling probabilities.
    cluster: per field int64 ``[V_f]`` cluster of each value.
    latent: per field float32 ``[V_f, latent_dim]`` value vectors ``u_v``.
    first_order: per field float32 ``[V_f]`` first-order weights ``w_v`` (before ``1/sqrt(F)``).
    numeric_weight: float64 ``[num_numeric]`` the ``beta_j``.
    intercept: calibrated ``b``.
  """

  popularity: list[np.ndarray]
  cluster: list[np.ndarray]
  latent: list[np.ndarray]
  first_order: list[np.ndarray]
  numeric_weight: np.ndarray
  intercept: float = 0.0


def generate(spec: SyntheticSpec) -> tuple[pd.DataFrame, np.ndarray, PlantedModel]:
  """Draws ``spec.num_rows`` rows.

  Returns:
    ``(frame, probability, model)``: ``frame`` has int64 columns ``cat0..`` (raw value ids),
    float64 columns ``num0..`` (NaN = missing) and float32 ``label``; ``probability`` is the
    float64 ``[num_rows]`` planted click probability of each row.
  """
  param_seq, row_seq = np.random.SeedSequence(spec.seed).spawn(2)
  model = _planted_model(spec, np.random.default_rng(param_seq))
  rng = np.random.default_rng(row_seq)
  n, num_fields = spec.num_rows, len(spec.vocab_sizes)
  frame = {}
  logit = np.zeros(n)
  latent_sum = np.zeros((n, spec.latent_dim), np.float32)
  latent_sq = np.zeros(n, np.float32)
  for name, pop, latent, first in zip(
    spec.categorical_names, model.popularity, model.latent, model.first_order, strict=True
  ):
    values = np.minimum(np.searchsorted(np.cumsum(pop), rng.random(n)), len(pop) - 1)
    frame[name] = values.astype(np.int64)
    logit += first[values] / math.sqrt(num_fields)
    u = latent[values]
    latent_sum += u
    latent_sq += np.einsum("nd,nd->n", u, u)
  num_pairs = num_fields * (num_fields - 1) // 2
  if num_pairs:
    # sum_{f<g} <u_f, u_g> = (|sum_f u_f|^2 - sum_f |u_f|^2) / 2, without an [n, F, F] tensor.
    pairwise = 0.5 * (np.einsum("nd,nd->n", latent_sum, latent_sum) - latent_sq)
    logit += spec.interaction_scale / math.sqrt(num_pairs) * pairwise
  for name, beta in zip(spec.numeric_names, model.numeric_weight, strict=True):
    counts = np.floor(np.exp(rng.normal(1.5, 1.2, n)))
    counts[rng.random(n) < _NUMERIC_MISSING] = np.nan
    frame[name] = counts
    t = np.nan_to_num(np.log1p(counts))
    logit += beta * (t - t.mean()) / max(t.std(), 1e-12)
  logit += spec.noise_scale * rng.standard_normal(n)
  model.intercept = calibrate_intercept(logit, spec.click_rate)
  probability = _sigmoid(logit + model.intercept)
  frame["label"] = (rng.random(n) < probability).astype(np.float32)
  return pd.DataFrame(frame), probability, model


def calibrate_intercept(logit: np.ndarray, target: float, iters: int = 60) -> float:
  """``b`` with ``mean(sigmoid(logit + b)) == target`` by bisection (the mean is monotone in b)."""
  low, high = -40.0, 40.0
  for _ in range(iters):
    mid = 0.5 * (low + high)
    if _sigmoid(logit + mid).mean() < target:
      low = mid
    else:
      high = mid
  return 0.5 * (low + high)


def _planted_model(spec: SyntheticSpec, rng: np.random.Generator) -> PlantedModel:
  d, k, spread = spec.latent_dim, spec.num_clusters, spec.cluster_spread
  # Var(u) = sigma^2 (1 + spread^2) per coordinate, and Var(<u, u'>) = d Var(u)^2 = 1.
  sigma = math.sqrt(1.0 / math.sqrt(d) / (1.0 + spread**2))
  model = PlantedModel([], [], [], [], rng.normal(0.0, 0.5, spec.num_numeric))
  for vocab, exponent in zip(spec.vocab_sizes, spec.exponents, strict=True):
    weights = np.arange(1, vocab + 1, dtype=np.float64) ** -exponent
    popularity = np.empty(vocab)
    popularity[rng.permutation(vocab)] = weights / weights.sum()
    cluster = rng.integers(0, k, vocab)
    centres = rng.normal(0.0, sigma, (k, d))
    latent = centres[cluster] + spread * sigma * rng.standard_normal((vocab, d))
    bias = rng.normal(0.0, 1.0, k)
    first = bias[cluster] + spread * rng.standard_normal(vocab)
    model.popularity.append(popularity)
    model.cluster.append(cluster)
    model.latent.append(latent.astype(np.float32))
    model.first_order.append(first.astype(np.float32))
  return model


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * x))
