"""mec_jax.fuxictr_export: FuxiCTR-order tables in, through mec_jax, and back in FuxiCTR's order."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import smoke
from mec_jax import external, fuxictr_export, pipeline
from mec_jax.compression.table import CompressedTable
from mec_jax.data import load_dataset
from mec_jax.errors import ConfigError
from tests.data.test_fuxictr import write_fuxictr_dataset

FIELDS = ("user", "item")


def _fuxictr_ids(written, name):
  vocab = written["vocabs"][name]
  return written["raw"]["train"][name].map(lambda x, v=vocab: v.get(x, v["__OOV__"])).to_numpy()


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
  """A run on a FuxiCTR folder from FuxiCTR-order tables (no flag), written back to FuxiCTR."""
  root = tmp_path_factory.mktemp("fuxictr_export")
  written = write_fuxictr_dataset(root / "tiny_fuxictr")
  config = smoke.get_config()
  config.data.name, config.data.dir = "fuxictr", str(root / "tiny_fuxictr")
  config.model.embed_dim, config.model.hidden_units = 4, (8,)
  config.train.epochs, config.quantize.epochs = 1, 1
  config.train.batch_size, config.quantize.batch_size = 64, 16
  config.quantize.min_vocab, config.quantize.codebook_size = 2, 8
  config.quantize.variant = "kmeans"  # stage B without training: seconds
  rng = np.random.default_rng(3)
  fx_tables = {}
  (root / "dumps").mkdir()
  for name in FIELDS:
    fx_tables[name] = rng.normal(size=(len(written["vocabs"][name]), 4)).astype(np.float32)
    fx_tables[name][0] = 0.0  # FuxiCTR's PAD row
    if name == "user":  # with a FuxiCTR LR table's first-order weights, PAD row 0 too
      bias = rng.normal(size=len(fx_tables[name])).astype(np.float32)
      bias[0] = 0.0
      np.savez(root / "dumps" / f"{name}.npz", embedding=fx_tables[name], bias=bias)
    else:
      np.save(root / "dumps" / f"{name}_embedding.npy", fx_tables[name])
  config.pretrain.external_tables = str(root / "dumps")
  workdir, out = str(root / "run"), str(root / "back")
  pipeline.run(config, workdir)
  record = fuxictr_export.write_fuxictr_tables(workdir, out)
  return config, written, fx_tables, workdir, out, record


def test_written_rows_are_the_compressed_rows_in_fuxictr_id_order(round_trip):
  config, written, fx_tables, workdir, out, record = round_trip
  dataset = load_dataset(config.data, os.path.join(workdir, "cache"))
  assert record["id_order"] == "fuxictr" and set(record["fields"]) == set(FIELDS)
  for j, name in enumerate(FIELDS):
    # FuxiCTR id -> mec_jax id, paired here value by value from the raw tokens of the train split.
    fx, ours = _fuxictr_ids(written, name), dataset.splits["train"]["ids"][:, j]
    vocab_size = len(written["vocabs"][name])
    fx_to_ours = np.full(vocab_size, dataset.feature_map.fields[j].oov_id)
    fx_to_ours[fx] = ours
    table = CompressedTable.load(os.path.join(workdir, "finetune", "tables", f"{name}.npz"))
    decoded = np.load(os.path.join(out, f"{name}_embedding.npy"))
    codes = np.load(os.path.join(out, f"{name}_codes.npy"))
    codebooks = np.load(os.path.join(out, f"{name}_codebooks.npy"))
    assert decoded.shape == (vocab_size, 4) and record["fields"][name]["vocab_size"] == vocab_size
    np.testing.assert_allclose(
      decoded[1:], table.reconstruct()[fx_to_ours[1:]], rtol=1e-5, atol=1e-6
    )
    assert not decoded[0].any()  # PAD, as FuxiCTR's nn.Embedding(padding_idx=0) keeps it
    np.testing.assert_array_equal(codes, table.codes[fx_to_ours])
    by_codes = np.concatenate([codebooks[m, codes[:, m]] for m in range(codes.shape[1])], axis=1)
    np.testing.assert_allclose(by_codes[1:], decoded[1:], rtol=1e-5, atol=1e-6)
    weights = table.first_order_weights()
    # DeepFM has first-order terms: compressed too, written beside the rows.
    assert weights is not None and "first_order" in record["fields"][name]["files"]
    first_order = np.load(os.path.join(out, f"{name}_first_order.npy"))
    np.testing.assert_allclose(first_order[1:], weights[fx_to_ours[1:]], rtol=1e-5, atol=1e-6)
    assert first_order[0] == 0.0
    # Aligned with the FuxiCTR table that went in: each id's row is nearer its own original row
    # than the rows one id over (what a shift by one would give).
    error = np.mean((decoded[1:] - fx_tables[name][1:]) ** 2)
    assert error < 0.5 * np.mean((decoded[1:-1] - fx_tables[name][2:]) ** 2)
    assert error < 0.5 * np.mean((decoded[2:] - fx_tables[name][1:-1]) ** 2)


def test_written_folder_reads_back_as_fuxictr_tables(round_trip):
  config, _, _, workdir, out, _ = round_trip
  assert external.recorded_order(out) == "fuxictr"
  again = config.copy_and_resolve_references()
  again.data.name = "synthetic"  # a recorded FuxiCTR order on another dataset: refused by name
  with pytest.raises(ValueError, match=r"pretrain\.external_index=fuxictr .* needs data\.name"):
    external.resolve_index(again, out)


def test_cli_writes_and_refuses_a_non_fuxictr_run_in_one_line(round_trip, tmp_path):
  _, _, _, workdir, _, _ = round_trip
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  command = [sys.executable, "-m", "mec_jax.fuxictr_export", f"--workdir={workdir}"]
  done = subprocess.run(
    [*command, f"--out={tmp_path / 'cli'}"], capture_output=True, text=True, env=env
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert "in FuxiCTR's id order: user" in done.stdout
  assert json.loads((tmp_path / "cli" / "id_order.json").read_text())["id_order"] == "fuxictr"
  other = tmp_path / "other"
  other.mkdir()
  (other / "config.json").write_text(json.dumps(smoke.get_config().to_dict()))
  with pytest.raises(ConfigError, match=r"data\.name='synthetic'; FuxiCTR's id order"):
    fuxictr_export.write_fuxictr_tables(str(other), str(tmp_path / "x"))
  assert fuxictr_export.main([f"--workdir={other}", f"--out={tmp_path / 'x'}"]) == 1
