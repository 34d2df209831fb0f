"""QR and the hashing trick from scratch: initial row statistics and smoke runs at equal bytes."""

import numpy as np
import pytest

from mec_jax import pipeline
from mec_jax.layers.qr import qr_index
from mec_jax.methods import budget, qr
from mec_jax.methods.hash import INIT_STD
from tests.methods.method_fixtures import FieldStub, smoke_config


def _config(**compress):
  return smoke_config(init_tables="random", **compress)


def _scratch_rows(large_index, init, combine="mult", vocab=20_000, collisions=25, dim=16):
  config = _config(qr_large_index=large_index, qr_random_init=init, qr_combine=combine)
  table = np.zeros((vocab, dim), np.float32)  # stage A's rows: unused from scratch
  art = qr.build_field(FieldStub(vocab), table, np.zeros(vocab), None, config, collisions, seed=3)
  assert art.quotient.shape == (vocab // collisions, dim) and art.remainder.shape == (25, dim)
  assert art.first_order is not None and not art.first_order.any()
  return art, art.reconstruct()


def _row_partners_cosine(art, rows):
  """Mean cosine between ids that share a large-table row (first and second id of each row)."""
  ids = np.arange(art.vocab_size)
  large = qr_index(ids, art.vocab_size, art.num_collisions, art.layout)[0]
  order = np.argsort(large, kind="stable")
  first, second = order[0::25], order[1::25]  # 25 ids per large row
  a, b = rows[first], rows[second]
  return float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


@pytest.mark.parametrize("combine", ["mult", "sum"])
@pytest.mark.parametrize("large_index", ["remainder", "quotient"])
def test_sign_init_rows_look_like_a_fresh_embed(large_index, combine):
  art, rows = _scratch_rows(large_index, "sign", combine)
  # A fresh `Embed` row is N(0, INIT_STD^2) per entry: same scale, centred, not ~0.
  assert abs(rows.std() / INIT_STD - 1) < 0.05
  assert abs(rows.mean()) < 0.05 * INIT_STD
  # With mult, ids sharing a large row start (nearly) uncorrelated, as two fresh `Embed` rows do;
  # a sum shares half of each row's variance.
  assert abs(_row_partners_cosine(art, rows) - (0.0 if combine == "mult" else 0.5)) < 0.1


def test_ones_init_starts_ids_of_a_row_equal_and_dlrm_init_positive():
  art, rows = _scratch_rows("quotient", "ones")
  assert abs(rows.std() / INIT_STD - 1) < 0.05
  assert _row_partners_cosine(art, rows) > 0.999  # only the small table can tell them apart
  art, rows = _scratch_rows("quotient", "dlrm")
  low = np.sqrt(1 / art.vocab_size)
  assert art.quotient.min() >= low and art.remainder.max() <= 1
  assert 0.2 < rows.mean() < 0.3  # E[U(low, 1)]^2 ~ 0.25: rows far from a fresh `Embed`'s
  with pytest.raises(ValueError, match="random init 'zeros'"):
    qr.random_tables(10, 2, 3, "mult", "zeros", np.random.default_rng(0))


@pytest.mark.parametrize("method", ["hash", "qr"])
def test_from_scratch_cell_runs_on_smoke_at_exact_bytes(method, tmp_path):
  config = _config(method=method, target_ratio=4.0)
  config.finetune.init_from_pretrain = False
  config.finetune.codebook_learning_rate = 0.0
  config.finetune.swap_in = False  # stage-A weights on random tables: nothing to compare
  config.train.epochs = 1
  report = pipeline.run(config, str(tmp_path))
  fields = report["compressed_fields"]
  assert sorted(fields) == ["cat0", "cat1"] and {f["method"] for f in fields.values()} == {method}
  dim = config.model.embed_dim
  if method == "qr":
    assert {f["large_index"] for f in fields.values()} == {config.compress.qr_large_index}
    rows = [f["quotient_rows"] + f["num_collisions"] for f in fields.values()]
    vocabs = [f["vocab_size"] for f in fields.values()]
    assert sum(rows) <= sum(vocabs) / 4.0  # within the budget plan_qr was given
    assert [f["num_collisions"] for f in fields.values()] == budget.plan_qr(
      vocabs, int(sum(vocabs) * dim * 4 / 4.0) // (4 * dim)
    )
  else:
    rows = [f["num_buckets"] for f in fields.values()]
  assert (
    report["memory"]["compressed_fields_only"]["compressed_bytes_packed"] == sum(rows) * dim * 4
  )
  assert report["compressed"]["source"] == "finetune"
  assert np.isfinite(report["compressed"]["test_auc"])
