"""`quantize_table` end to end on small tables, refitting, first-order terms and bad inputs."""

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from mec_jax.compression import pq, quantizer
from mec_jax.compression.quantizer import QuantizeSettings, quantize_table
from mec_jax.compression.refit import fit_first_order, refit_codebooks
from mec_jax.compression.table import CompressedTable

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(num_subspaces=2, codebook_size=16, epochs=3, batch_size=256, kmeans_iters=5)


def _table(vocab=800, dim=8, seed=0):
  """Clustered rows with Zipf counts (about a third of them rare)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(20, dim))
  table = centres[rng.integers(0, 20, vocab)] + 0.3 * rng.normal(size=(vocab, dim))
  popularity = np.arange(1, vocab + 1) ** -1.1
  counts = rng.multinomial(20 * vocab, popularity / popularity.sum())[rng.permutation(vocab)]
  return (0.1 * table).astype(np.float32), counts


@pytest.fixture(scope="module")
def table_and_counts():
  return _table()


@pytest.fixture(scope="module")
def runs(table_and_counts):
  table, counts = table_and_counts
  epochs = []
  out = {}
  for variant in ("mec", "reference", "kmeans"):
    settings = QuantizeSettings(variant=variant, **SMALL)
    progress = (lambda e, m: epochs.append((e, m))) if variant == "mec" else None
    out[variant] = quantize_table(jax.random.key(0), table, counts, settings, progress=progress)
  out["progress"] = epochs
  return out


def _weighted_error(table, reconstruction, counts):
  w = quantizer.popularity_weights(counts)
  return np.average(((reconstruction - table) ** 2).sum(1), weights=w)


def test_artifact_shapes_dtypes_and_stats(runs, table_and_counts):
  table, counts = table_and_counts
  compressed = runs["mec"]
  assert isinstance(compressed, CompressedTable)
  assert compressed.codes.shape == (800, 2) and compressed.codes.dtype == np.uint8
  assert compressed.codebooks.shape == (2, 16, 4) and compressed.variant == "mec"
  assert compressed.usage_entropy.shape == (2,) and (compressed.usage_entropy <= 1 + 1e-6).all()
  np.testing.assert_allclose(
    compressed.usage_entropy, pq.usage_entropy(compressed.codes, 16), rtol=1e-6
  )
  stats = compressed.stats
  np.testing.assert_allclose(
    stats["recon_error_weighted"],
    _weighted_error(table, compressed.reconstruct(), counts),
    rtol=1e-5,
  )
  assert 1 <= stats["epochs_run"] <= 3 and 0 <= stats["best_epoch"] <= stats["epochs_run"]
  assert stats["rare_rows"] == int((counts <= 3).sum()) > 0
  assert 0 <= stats["rare_distinct_fraction"] <= 1
  # Progress: one call per epoch, 0-based, with float metrics.
  assert [e for e, _ in runs["progress"]] == list(range(stats["epochs_run"]))
  assert all(isinstance(v, float) for _, m in runs["progress"] for v in m.values())


def test_codebooks_are_weighted_means_in_table_space(runs, table_and_counts):
  table, counts = table_and_counts
  compressed = runs["mec"]
  w = quantizer.popularity_weights(counts)
  codes = compressed.codes.astype(int)
  for m in range(2):
    for k in np.unique(codes[:, m])[:5]:
      rows = codes[:, m] == k
      expected = np.average(table[rows, 4 * m : 4 * m + 4], axis=0, weights=w[rows])
      np.testing.assert_allclose(compressed.codebooks[m, k], expected, rtol=1e-4, atol=1e-6)


def test_reconstruction_beats_random_codebook_and_reference(runs, table_and_counts):
  table, counts = table_and_counts
  rng = np.random.default_rng(0)
  random_books = table[rng.choice(800, 16, replace=False)].reshape(16, 2, 4).transpose(1, 0, 2)
  random_codes = np.asarray(pq.encode(table, random_books))
  random_error = _weighted_error(table, np.asarray(pq.decode(random_codes, random_books)), counts)
  for variant in ("mec", "kmeans"):
    assert runs[variant].stats["recon_error_weighted"] < 0.5 * random_error
  assert runs["mec"].stats["recon_error_weighted"] < runs["reference"].stats["recon_error_weighted"]


def test_refit_is_least_squares_for_fixed_codes():
  rng = np.random.default_rng(3)
  table = rng.normal(size=(200, 6))
  codes = rng.integers(0, 5, size=(200, 3))
  w = rng.integers(1, 4, 200).astype(float)
  books = refit_codebooks(table, codes, w, 6)  # code 5 unused: gets the sub-space mean
  fitted = books[np.arange(3), codes].reshape(200, 6)
  err = np.average(((fitted - table) ** 2).sum(1), weights=w)
  perturbed = books + 0.01 * rng.normal(size=books.shape)
  worse = np.average(
    ((perturbed[np.arange(3), codes].reshape(200, 6) - table) ** 2).sum(1), weights=w
  )
  assert err < worse
  np.testing.assert_allclose(books[0, 5], np.average(table[:, :2], 0, w), rtol=1e-5)


def test_fit_first_order_matches_least_squares():
  rng = np.random.default_rng(4)
  codes = rng.integers(0, 4, size=(300, 3))
  bias = rng.normal(size=300)
  w = rng.integers(1, 5, 300).astype(float)
  first = fit_first_order(codes, bias, w, 4, sweeps=200)
  assert first.shape == (3, 4) and first.dtype == np.float32
  design = np.zeros((300, 12))
  for m in range(3):
    design[np.arange(300), 4 * m + codes[:, m]] = 1.0
  sqrt_w = np.sqrt(w)[:, None]
  solution = np.linalg.lstsq(design * sqrt_w, bias * sqrt_w[:, 0], rcond=None)[0]
  np.testing.assert_allclose(first[np.arange(3), codes].sum(1), design @ solution, atol=1e-4)
  # Zero sweeps: the per-code weighted mean of bias / M.
  plain = fit_first_order(codes, bias, w, 4, sweeps=0)
  rows = codes[:, 1] == 2
  np.testing.assert_allclose(plain[1, 2], np.average(bias[rows] / 3, weights=w[rows]), rtol=1e-5)


def test_kmeans_variant_with_bias_and_artifact_round_trip(tmp_path, table_and_counts):
  table, counts = table_and_counts
  bias = np.random.default_rng(5).normal(size=800).astype(np.float32)
  settings = QuantizeSettings(variant="kmeans", **SMALL)
  compressed = quantize_table(None, table, counts, settings, bias=bias, name="item_id")
  assert compressed.first_order.shape == (2, 16) and compressed.name == "item_id"
  assert compressed.stats["epochs_run"] == 0
  path = str(tmp_path / "item_id.npz")
  compressed.save(path)
  loaded = CompressedTable.load(path)
  np.testing.assert_array_equal(loaded.codes, compressed.codes)
  np.testing.assert_array_equal(loaded.reconstruct(), compressed.reconstruct())


def test_settings_from_default_config():
  spec = importlib.util.spec_from_file_location("default_config", REPO / "configs" / "default.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  settings = QuantizeSettings.from_config(config.quantize)
  assert settings.variant == config.quantize.variant
  assert settings.codebook_size == config.quantize.codebook_size
  assert settings.contrastive_temperature == config.quantize.contrastive_temperature
  assert QuantizeSettings.from_config({"num_subspaces": 2, "min_vocab": 9}).num_subspaces == 2


@pytest.mark.parametrize(
  ("change", "match"),
  [
    (lambda t, c, s: (_with_nan(t), c, s), "row 7 has NaN"),
    (lambda t, c, s: (t, c, QuantizeSettings(num_subspaces=3)), "not divisible by"),
    (lambda t, c, s: (np.repeat(t[:5], 10, 0), c[:50], s), "larger than the number of distinct"),
    (lambda t, c, s: (t, c[:-1], s), "counts must have shape"),
    (lambda t, c, s: (t, -c, s), "non-negative"),
  ],
)
def test_bad_inputs(change, match):
  table, counts = _table(vocab=100)
  settings = QuantizeSettings(num_subspaces=2, codebook_size=16)
  table, counts, settings = change(table, counts, settings)
  with pytest.raises(ValueError, match=match):
    quantize_table(jax.random.key(0), table, counts, settings)


def _with_nan(table):
  table = table.copy()
  table[7, 3] = np.nan
  table[9, 0] = np.inf
  return table


def test_bad_settings():
  with pytest.raises(ValueError, match="variant"):
    QuantizeSettings(variant="mecc")
  with pytest.raises(ValueError, match="codebook_size"):
    QuantizeSettings(codebook_size=1)
  with pytest.raises(ValueError, match="latent_dim"):
    QuantizeSettings(latent_dim=10, num_subspaces=4)
  with pytest.raises(ValueError, match="bias"):
    table, counts = _table(vocab=100)
    quantize_table(
      None, table, counts, QuantizeSettings(num_subspaces=2, codebook_size=4), bias=[1.0]
    )
