"""mec_jax.external: tables trained elsewhere, read and checked against the dataset's vocab."""

import os

import numpy as np
import pytest

from mec_jax import external
from mec_jax.errors import DataError


def test_npz_with_counts_and_bias_round_trips(tmp_path):
  rng = np.random.default_rng(0)
  embedding, counts, bias = rng.normal(size=(7, 4)), rng.integers(0, 9, 7), rng.normal(size=7)
  np.savez(tmp_path / "user.npz", embedding=embedding, counts=counts, bias=bias)
  arrays = external.read_external_table(str(tmp_path), "user", vocab_size=7, dim=4)
  np.testing.assert_allclose(arrays["embedding"], embedding, rtol=1e-6)
  np.testing.assert_array_equal(arrays["counts"], counts)
  np.testing.assert_allclose(arrays["bias"], bias, rtol=1e-6)
  assert arrays["embedding"].dtype == np.float32 and arrays["counts"].dtype == np.int64


def test_released_code_npy_dump_with_optional_counts(tmp_path):
  embedding = np.arange(12, dtype=np.float64).reshape(3, 4)
  np.save(tmp_path / "item_embedding.npy", embedding)
  arrays = external.read_external_table(str(tmp_path), "item", vocab_size=3, dim=4)
  assert set(arrays) == {"embedding"}
  np.testing.assert_array_equal(arrays["embedding"], embedding)
  np.save(tmp_path / "item_counts.npy", np.array([5, 0, 1]))
  arrays = external.read_external_table(str(tmp_path), "item", vocab_size=3, dim=4)
  np.testing.assert_array_equal(arrays["counts"], [5, 0, 1])


@pytest.mark.parametrize(
  "arrays, match",
  [
    ({"embedding": np.zeros((6, 4))}, r"user\.npz: embedding .* expected float \[7, 4\]"),
    ({"embedding": np.zeros((7, 3))}, r"expected float \[7, 4\]"),
    ({"embedding": np.zeros((7, 4), np.int32)}, "expected float"),
    ({"embedding": np.full((7, 4), np.nan)}, "non-finite"),
    ({"embedding": np.zeros((7, 4)), "counts": np.zeros(6)}, r"counts .* expected \[7\]"),
    ({"embedding": np.zeros((7, 4)), "counts": -np.ones(7)}, "non-negative"),
    ({"table": np.zeros((7, 4))}, "no array 'embedding'"),
  ],
)
def test_bad_tables_name_the_file(tmp_path, arrays, match):
  np.savez(tmp_path / "user.npz", **arrays)
  with pytest.raises(DataError, match=match):
    external.read_external_table(str(tmp_path), "user", vocab_size=7, dim=4)


def test_missing_table_names_the_files_looked_for(tmp_path):
  with pytest.raises(
    DataError, match=r"field 'user' \(looked for user\.npz and user_embedding\.npy"
  ):
    external.read_external_table(str(tmp_path), "user", vocab_size=7, dim=4)
  assert not os.listdir(tmp_path)


def test_layout_problem_tells_fuxictr_rows_from_mec_jax_rows():
  """FuxiCTR's table: PAD row 0 of zeros, and one row more unless its OOV id occurs in train."""
  rng = np.random.default_rng(0)
  trained = rng.normal(size=(5, 3))
  fuxictr_same_size = np.concatenate([np.zeros((1, 3)), trained[1:]])
  fuxictr_plus_one = np.concatenate([np.zeros((1, 3)), trained])
  problem = external.layout_problem
  assert problem(trained, "dataset", 5) is None
  assert "one more" in problem(fuxictr_plus_one, "dataset", 5)
  assert "row 0 all zeros" in problem(fuxictr_same_size, "dataset", 5)
  assert problem(fuxictr_same_size, "fuxictr", 5, fuxictr_rows=5) is None
  assert problem(fuxictr_plus_one, "fuxictr", 5, fuxictr_rows=6) is None
  assert "not all zeros" in problem(trained, "fuxictr", 5, fuxictr_rows=5)
  assert "mec_jax ids as rows" in problem(trained, "fuxictr", 5, fuxictr_rows=6)


def test_recorded_order_is_read_and_checked(tmp_path):
  assert external.recorded_order(str(tmp_path)) is None
  (tmp_path / "id_order.json").write_text('{"id_order": "fuxictr"}')
  assert external.recorded_order(str(tmp_path)) == "fuxictr"
  (tmp_path / "id_order.json").write_text('{"id_order": "shuffled"}')
  with pytest.raises(DataError, match=r"id_order\.json: id_order is 'shuffled'"):
    external.recorded_order(str(tmp_path))


def test_external_index_binds_a_workdir_only_with_external_tables():
  """Its default changed (dataset -> auto): work directories without external tables stay usable."""
  from mec_jax import workdir as workdir_config
  from mec_jax.configs import default

  config = default.get_config()
  assert "pretrain.external_index" not in workdir_config.stage_fingerprints(config)["pretrain"]
  config.pretrain.external_tables = "/tables"
  assert workdir_config.stage_fingerprints(config)["pretrain"]["pretrain.external_index"] == "auto"
