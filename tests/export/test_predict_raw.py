"""export.load(DIR).predict_raw: raw Criteo-layout lines scored through the export equal the
pipeline's test scores; the vocabularies are covered by the manifest's digests."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from configs import smoke
from mec_jax import export, pipeline
from mec_jax.data import load_dataset
from mec_jax.data.raw import split_indices
from mec_jax.errors import ArtifactError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / ".." / "shared" / "data" / "criteo_sample" / "criteo_sample_2k.txt"
NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]


def _raw_split(split: str, fractions, seed: int) -> dict:
  """The raw text cells of one split, read with plain Python (no mec_jax reader)."""
  lines = [line.rstrip("\n").split("\t") for line in SAMPLE.read_text().splitlines() if line]
  rows = split_indices(len(lines), fractions, seed)[split]
  columns = list(zip(*[lines[i] for i in rows], strict=True))
  names = ["label", *NUMERIC, *CATEGORICAL]
  return {name: list(col) for name, col in zip(names, columns, strict=True)}


@pytest.fixture(scope="module")
def criteo_run(tmp_path_factory):
  if not SAMPLE.exists():
    pytest.skip(f"{SAMPLE} not present")
  config = smoke.get_config()
  config.data.name, config.data.dir = "criteo_kaggle", str(SAMPLE)
  config.data.min_count = 2  # rare values share the OOV id
  config.quantize.min_vocab = 250  # 4 fields compressed
  config.quantize.variant = "kmeans"  # stage B without training: this test is about serving
  config.train.epochs = 1
  config.quantize.epochs = 1
  workdir = tmp_path_factory.mktemp("criteo") / "run"
  report = pipeline.run(config, str(workdir))
  dataset = load_dataset(config.data, str(workdir / "cache"))
  return config, workdir, report, dataset


def test_predict_raw_equals_the_pipelines_test_scores(criteo_run):
  config, workdir, report, dataset = criteo_run
  served = export.load(str(workdir / "export"))
  test = dataset.splits["test"]
  ids, values = np.asarray(test["ids"]), np.asarray(test["values"])
  want = np.asarray(served(ids, values))  # the ids path: what the pipeline scored
  raw = _raw_split("test", tuple(config.data.split_fractions), int(config.data.split_seed))
  labels = np.asarray(raw.pop("label"), np.float32)
  np.testing.assert_array_equal(labels, test["label"])
  got_ids, got_values = served.encode_raw(raw)
  np.testing.assert_array_equal(got_ids, ids)
  np.testing.assert_allclose(got_values, values, rtol=1e-6, atol=1e-6)
  assert (got_ids[:, 13:] == np.array(dataset.feature_map.vocab_sizes[13:]) - 1).any()  # OOV hit
  probs = served.predict_raw(raw)
  np.testing.assert_allclose(probs, 1 / (1 + np.exp(-want)), rtol=1e-5, atol=1e-6)
  assert abs(roc_auc_score(labels, probs) - report["compressed"]["test_auc"]) < 1e-6
  full = export.load(str(workdir / "export" / "full")).predict_raw(raw)
  assert abs(roc_auc_score(labels, full) - report["full"]["test_auc"]) < 1e-6


def test_predict_raw_takes_a_dataframe_blanks_and_numbers(criteo_run):
  pd = pytest.importorskip("pandas")
  config, workdir, _, _ = criteo_run
  served = export.load(str(workdir / "export"))
  raw = _raw_split("test", tuple(config.data.split_fractions), int(config.data.split_seed))
  del raw["label"]
  want = served.predict_raw(raw)
  frame = pd.DataFrame(raw)
  for name in NUMERIC:  # numbers instead of numeric strings, NaN for blanks
    frame[name] = pd.to_numeric(frame[name].replace("", None))
  for name in CATEGORICAL:  # None for a blank categorical cell: the reader's ""
    frame[name] = frame[name].replace("", None)
  np.testing.assert_allclose(served.predict_raw(frame), want, rtol=1e-6)
  with pytest.raises(ValueError, match="no column 'C7'"):
    served.predict_raw({k: v for k, v in raw.items() if k != "C7"})
  unseen = {k: v[:3] for k, v in raw.items()} | {"C3": ["never-seen"] * 3}
  ids, _ = served.encode_raw(unseen)
  assert (ids[:, NUMERIC.__len__() + 2] == served.oov_ids[15]).all()


@pytest.mark.parametrize(
  "case, match",
  [
    ("vocab:missing", r"vocab\.npz: missing"),
    ("vocab:edited", r"vocab\.npz: f\d{3}_keys: SHA-256 differs"),
    ("vocab:garbage", r"vocab\.npz: damaged"),
    ("manifest:mean", r"section 'preprocess' differs from its recorded SHA"),
  ],
)
def test_tampered_vocabularies_are_one_artifact_error(criteo_run, tmp_path, case, match):
  _, workdir, _, _ = criteo_run
  copy = tmp_path / "export"
  shutil.copytree(workdir / "export", copy)
  vocab, manifest_path = copy / "vocab.npz", copy / "manifest.json"
  if case == "vocab:missing":
    vocab.unlink()
  elif case == "vocab:garbage":
    vocab.write_bytes(vocab.read_bytes()[:300])
  elif case == "vocab:edited":
    with np.load(vocab) as npz:
      arrays = {k: npz[k] for k in npz.files}
    key = next(k for k in sorted(arrays) if k.endswith("_keys") and len(arrays[k]) > 1)
    arrays[key] = arrays[key][::-1].copy()  # two values swap ids
    np.savez(vocab, **arrays)
  else:
    manifest = json.loads(manifest_path.read_text())
    manifest["preprocess"]["fields"][0]["mean"] += 0.5
    manifest_path.write_text(json.dumps(manifest))
  with pytest.raises(ArtifactError, match=match) as info:
    export.load(str(copy))
  assert "\n" not in str(info.value)


def test_frappe_raw_libfm_rows_encode_to_the_training_ids():
  """libFM layout: a field's raw value is its global index (int or numeric string)."""
  from mec_jax.data import preprocess
  from mec_jax.export.raw import RawEncoder

  directory = REPO / ".." / "shared" / "data" / "frappe"
  if not directory.exists():
    pytest.skip(f"{directory} not present")
  config = smoke.get_config()
  config.data.name, config.data.dir, config.data.min_count = "frappe", str(directory), 2
  dataset = load_dataset(config.data, "")
  encoder = RawEncoder(*preprocess.build(config.data, dataset.feature_map, dataset.stats))
  lines = []
  for name in ("frappe.validation.libfm", "frappe.test.libfm"):  # the reader's pooling order
    lines += [line.split() for line in (directory / name).read_text().splitlines() if line.strip()]
  rows = split_indices(len(lines), tuple(config.data.split_fractions), int(config.data.split_seed))
  test = [lines[i] for i in rows["test"]]
  names = dataset.feature_map.names
  raw = {name: [line[j + 1].split(":")[0] for line in test] for j, name in enumerate(names)}
  raw["user"] = [int(v) for v in raw["user"]]  # ints and numeric strings alike
  ids, values = encoder(raw)
  np.testing.assert_array_equal(ids, dataset.splits["test"]["ids"])
  np.testing.assert_array_equal(values, 1.0)
  assert (ids == np.array(dataset.feature_map.vocab_sizes) - 1).any()  # some OOV (min_count 2)
