"""mec_jax.export: exported forward pass == in-memory model, loading without flax, tables on disk."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from configs import smoke
from mec_jax import export, model_factory
from mec_jax.compression.table import CompressedTable
from mec_jax.errors import ArtifactError
from mec_jax.export import program, writer
from mec_jax.layers import CodebookEmbed
from mec_jax.layers.embed import Embed

REPO = Path(__file__).resolve().parents[2]
FIELDS = ["big", "small", "num"]


def _table(vocab=60, m=2, k=16, s=4, seed=0):
  rng = np.random.default_rng(seed)
  return CompressedTable(
    codes=rng.integers(0, k, (vocab, m)),
    codebooks=rng.normal(size=(m, k, s)),
    first_order=rng.normal(size=(m, k)),
    name="big",
  )


def _batch(rows, seed):
  rng = np.random.default_rng(seed)
  ids = np.stack([rng.integers(-3, 70, rows), rng.integers(0, 9, rows), np.zeros(rows)], 1)
  values = np.ones((rows, 3), np.float32)
  values[:, 2] = rng.normal(size=rows)
  return ids.astype(np.int32), values


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A DeepFM (batch norm on, so batch statistics are exported too) over a CodebookEmbed field."""
  config = smoke.get_config()
  config.model.batch_norm = True
  rngs = nnx.Rngs(0)
  tables = [
    CodebookEmbed.from_table(_table(), rngs=rngs),
    Embed(9, 8, rngs=rngs),
    Embed(1, 8, rngs=rngs),
  ]
  model = model_factory.build_model("deepfm", tables, config, 0)
  for _, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):  # non-trivial weights everywhere
    var[...] = var[...] + 0.05 * np.random.default_rng(1).normal(size=var[...].shape)
  directory = str(tmp_path_factory.mktemp("export") / "model")
  writer.export_model(model, directory, field_names=FIELDS, meta={"note": "test"})
  return model, directory


@pytest.mark.parametrize("rows", [1, 37])
def test_exported_logits_equal_the_model(exported, rows):
  model, directory = exported
  served = export.load(directory)
  ids, values = _batch(rows, seed=rows)
  model.eval()
  want = np.asarray(model(ids, values))
  got = np.asarray(served(ids, values))
  assert got.shape == (rows,)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_batch_dimension_is_symbolic_and_codes_keep_their_dtype(exported):
  _, directory = exported
  manifest = export.read_manifest(directory)
  assert manifest["program"]["in_avals"][-2] == "int32[batch,3]"
  ids_aval = program.read_program(str(Path(directory, "model.stablehlo"))).in_avals[-2]
  assert str(ids_aval.shape[0]) == "batch" and ids_aval.shape[1:] == (3,)
  assert ids_aval.dtype == np.int32
  assert [f["table"] for f in manifest["fields"]] == ["codebook", "full", "full"]
  codes = [p for p in manifest["params"] if "codes" in p["path"]]
  assert codes and codes[0]["dtype"] == "uint8" and codes[0]["shape"] == [60, 2]
  assert manifest["meta"] == {"note": "test"}
  assert Path(directory, "model.stablehlo").stat().st_size > 1000


def test_load_runs_without_flax_or_training_code(exported):
  model, directory = exported
  ids, values = _batch(5, seed=3)
  code = (
    "import json, sys, numpy as np\n"
    "from mec_jax import export\n"
    f"m = export.load({directory!r})\n"
    f"out = m(np.array({ids.tolist()}), np.array({values.tolist()}, np.float32))\n"
    "heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('flax', 'optax', 'orbax')\n"
    "               or k.startswith(('mec_jax.train', 'mec_jax.models', 'mec_jax.layers')))\n"
    "print(json.dumps({'logits': np.asarray(out).tolist(), 'heavy': heavy}))\n"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)},
    timeout=300,
    check=True,
  )
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["heavy"] == []
  model.eval()
  np.testing.assert_allclose(result["logits"], np.asarray(model(ids, values)), rtol=1e-5, atol=1e-6)


def test_bad_requests_and_directories_are_clear_errors(exported, tmp_path):
  _, directory = exported
  served = export.load(directory)
  with pytest.raises(ValueError, match=r"expected \[batch, 3\]"):
    served(np.zeros((4, 2), np.int32))
  with pytest.raises(ValueError, match="integers"):
    served(np.zeros((4, 3), np.float32))
  with pytest.raises(ArtifactError, match="no exported model"):
    export.load(str(tmp_path))
  broken = tmp_path / "broken"
  broken.mkdir()
  for name in ("manifest.json", "model.stablehlo"):
    (broken / name).write_bytes(Path(directory, name).read_bytes())
  np.savez(broken / "params.npz", a0000=np.zeros(3, np.float32))
  with pytest.raises(ArtifactError, match=r"params\.npz: a0000 .* the program expects"):
    export.load(str(broken))


def test_numpy_lookup_equals_codebook_embed():
  table = _table(vocab=50, m=4, k=8, s=3)
  layer = CodebookEmbed.from_table(table, rngs=nnx.Rngs(0))
  ids = np.array([[0, 7, 49], [3, -1, 50], [1000, 12, 12]])
  np.testing.assert_allclose(table.lookup(ids), np.asarray(layer(ids)), rtol=1e-6)
  assert table.lookup(ids).shape == (3, 3, 12)
  with pytest.raises(ValueError, match=r"table 'big': ids must have an integer dtype"):
    table.lookup(np.array([0.5]))
  np.testing.assert_array_equal(table.lookup(np.array([2**32], np.int64)), table.lookup([49]))


def test_saved_tables_equal_the_model(tmp_path):
  stage_b = _table()
  stage_b.usage_entropy = np.array([0.5, 0.75], np.float32)
  rngs = nnx.Rngs(0)
  layer = CodebookEmbed.from_table(stage_b, rngs=rngs)
  layer.codebooks[...] = layer.codebooks[...] + 1.0  # as if stage C had trained them
  model = model_factory.build_model("fm", [layer, Embed(9, 8, rngs=rngs)], smoke.get_config(), 0)
  written = writer.save_compressed_tables(
    model, ["big", "small"], lambda f: str(tmp_path / f"{f}.npz"), {"big": stage_b}, source="test"
  )
  assert list(written) == ["big"] and not (tmp_path / "small.npz").exists()
  back = CompressedTable.load(str(tmp_path / "big.npz"))
  np.testing.assert_array_equal(back.codes, np.asarray(layer.codes[...]))
  np.testing.assert_array_equal(back.codebooks, np.asarray(layer.codebooks[...]))
  np.testing.assert_array_equal(back.first_order, np.asarray(layer.first_order_codebook[...]))
  np.testing.assert_allclose(back.lookup(np.arange(60)), np.asarray(layer(np.arange(60))))
  np.testing.assert_array_equal(back.usage_entropy, stage_b.usage_entropy)
  assert back.name == "big" and back.stats == {"source": "test"}


def test_served_ids_follow_the_id_policy(exported):
  """Ids passed as numpy int64 (negative, past the vocabulary, >= 2**31, >= 2**32) score as the
  field's OOV id, exactly as the in-memory model scores them eagerly."""
  model, directory = exported
  served = export.load(directory)
  wide = [-1, 60, 2**31 - 1, 2**31, 2**32, 2**32 + 1, -(2**32) + 3]
  ids = np.zeros((len(wide), 3), np.int64)
  ids[:, 0] = wide
  ids[:, 1] = wide[::-1]
  values = np.ones(ids.shape, np.float32)
  oov = ids.copy()
  oov[:, 0], oov[:, 1] = 59, 8  # the OOV ids (vocab_size - 1) of the fields
  got = np.asarray(served(ids, values))
  np.testing.assert_allclose(got, np.asarray(served(oov.astype(np.int32), values)), rtol=1e-6)
  model.eval()
  np.testing.assert_allclose(got, np.asarray(model(ids, values)), rtol=1e-5, atol=1e-6)
  assert [f["oov_id"] for f in served.manifest["fields"]] == [59, 8, 0]


def _same_shape_pair(manifest):
  """Keys of two arrays of equal shape and dtype but different contents."""
  seen = {}
  for spec in manifest["params"]:
    sig = (tuple(spec["shape"]), spec["dtype"])
    if sig in seen and seen[sig]["sha256"] != spec["sha256"]:
      return seen[sig]["key"], spec["key"]
    seen.setdefault(sig, spec)
  raise AssertionError("no two same-shape arrays in the export")


def _tamper(directory: Path, case: str) -> None:
  manifest_path, program_path, params_path = (
    directory / name for name in ("manifest.json", "model.stablehlo", "params.npz")
  )
  manifest = json.loads(manifest_path.read_text())
  if case.startswith("manifest:"):
    what = case.split(":")[1]
    if what == "truncated":
      manifest_path.write_bytes(manifest_path.read_bytes()[:200])
      return
    if what == "garbage":
      manifest_path.write_bytes(os.urandom(300))
      return
    if what == "list":
      manifest = [manifest]
    elif what == "no-params":
      del manifest["params"]
    elif what == "no-digests":
      del manifest["sha256"]
    elif what == "vocab_size":
      manifest["fields"][0]["vocab_size"] = 61
    elif what == "renamed":
      manifest["fields"][1]["name"] = "renamed"
    elif what == "version":
      manifest["format_version"] = 1
    manifest_path.write_text(json.dumps(manifest))
  elif case == "program:flipped":
    data = bytearray(program_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    program_path.write_bytes(bytes(data))
  elif case == "program:truncated":
    program_path.write_bytes(program_path.read_bytes()[:100])
  elif case == "program:missing":
    program_path.unlink()
  elif case in ("params:truncated", "params:garbage"):
    data = params_path.read_bytes()
    params_path.write_bytes(data[: len(data) // 2] if "trunc" in case else os.urandom(len(data)))
  elif case == "params:missing":
    params_path.unlink()
  else:
    with np.load(params_path) as npz:
      arrays = {key: npz[key] for key in npz.files}
    if case == "params:swapped":
      a, b = _same_shape_pair(manifest)
      arrays[a], arrays[b] = arrays[b], arrays[a]
    elif case == "params:dropped":
      del arrays["a0001"]
    elif case == "params:extra":
      arrays["z9999"] = np.zeros(3)
    elif case == "params:one-value":
      arrays["a0000"] = arrays["a0000"].copy()
      arrays["a0000"].reshape(-1)[0] += 1
    np.savez(params_path, **arrays)


@pytest.mark.parametrize(
  "case, match",
  [
    ("manifest:truncated", r"manifest\.json: unreadable \(.*export again"),
    ("manifest:garbage", r"manifest\.json: unreadable"),
    ("manifest:list", r"manifest\.json: holds a list, expected an object"),
    ("manifest:no-params", r"manifest\.json: .*lacks keys \['params'\]"),
    ("manifest:no-digests", r"manifest\.json: .*lacks keys \['sha256'\]"),
    ("manifest:vocab_size", r"manifest\.json: section 'fields' differs from its recorded SHA"),
    ("manifest:renamed", r"manifest\.json: section 'fields' differs from its recorded SHA"),
    ("manifest:version", r"manifest\.json: format_version 1, expected 3"),
    ("program:flipped", r"model\.stablehlo: SHA-256 differs from the one manifest\.json records"),
    ("program:truncated", r"model\.stablehlo: SHA-256 differs"),
    ("program:missing", r"model\.stablehlo: unreadable \(No such file or directory\); export"),
    ("params:truncated", r"params\.npz: damaged \("),
    ("params:garbage", r"params\.npz: damaged \("),
    ("params:missing", r"params\.npz: missing"),
    ("params:swapped", r"params\.npz: a\d{4} \(.*\): SHA-256 differs .*swapped"),
    ("params:one-value", r"params\.npz: a0000 \(.*\): SHA-256 differs"),
    ("params:dropped", r"params\.npz: no array 'a0001'"),
    ("params:extra", r"params\.npz: arrays \['z9999'\] are not in manifest\.json"),
  ],
)
def test_tampered_exports_are_one_artifact_error(exported, tmp_path, case, match):
  _, directory = exported
  copy = tmp_path / "model"
  shutil.copytree(directory, copy)
  _tamper(copy, case)
  with pytest.raises(ArtifactError, match=match) as info:
    export.load(str(copy))
  assert str(copy) in str(info.value)  # names the file
  assert "\n" not in str(info.value)
