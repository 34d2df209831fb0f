"""`preflight`: what can be known before stage A stops there, naming the key, field or split."""

import copy
import os
import shutil

import numpy as np
import pytest

from mec_jax import pipeline, preflight
from mec_jax.data import load_dataset
from mec_jax.errors import ConfigError, DataError
from mec_jax.train import loop
from mec_jax.workdir import Workdir
from tests.conftest import quick_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return load_dataset(quick_config().data, str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def wd(tmp_path):
  return Workdir(str(tmp_path))


def test_a_valid_config_passes(dataset, wd):
  assert preflight.preflight(quick_config(), dataset, wd) is None


def test_empty_split(tmp_path, wd):
  config = quick_config()
  config.data.split_fractions = (0.9, 0.1, 0.0)
  empty = load_dataset(config.data, str(tmp_path / "cache"))
  with pytest.raises(
    DataError,
    match=r"data split 'test' of synthetic is empty \(data.split_fractions=\(0.9, 0.1, 0.0\)\)",
  ):
    preflight.preflight(config, empty, wd)


def test_batch_larger_than_the_train_split(dataset, wd):
  config = quick_config()
  config.train.batch_size = dataset.num_rows("train") + 8
  with pytest.raises(
    ConfigError,
    match=rf"config.train.batch_size={config.train.batch_size} "
    rf"exceeds the {dataset.num_rows('train')} rows of the train split",
  ):
    preflight.preflight(config, dataset, wd)


def test_codebook_larger_than_a_field(dataset, wd):
  config = quick_config()
  fm = dataset.feature_map
  small = min(
    (fm.fields[i] for i in fm.fields_to_compress(config.quantize.min_vocab)),
    key=lambda f: f.vocab_size,
  )
  config.quantize.codebook_size = small.vocab_size + 1
  with pytest.raises(
    ConfigError,
    match=rf"config.quantize.codebook_size={small.vocab_size + 1} "
    rf"exceeds the {small.vocab_size} ids \(distinct rows\) of field '{small.name}'",
  ):
    preflight.preflight(config, dataset, wd)


def test_nothing_to_compress(dataset, wd):
  config = quick_config()
  config.quantize.min_vocab = 10**6
  largest = max(dataset.feature_map.vocab_sizes)
  with pytest.raises(
    ConfigError,
    match=r"nothing to compress: config.quantize.min_vocab=1000000 is "
    rf"above every field's vocabulary \(largest: 'cat0' with {largest} ids\).*"
    r"allow_nothing_to_compress=True",
  ):
    preflight.preflight(config, dataset, wd)
  config.stage = "pretrain"  # stage A alone compresses nothing anyway
  assert "nothing to compress" in preflight.preflight(config, dataset, wd)
  config.stage = "all"
  config.quantize.allow_nothing_to_compress = True
  assert "min_vocab=1000000" in preflight.preflight(config, dataset, wd)


@pytest.mark.parametrize(
  "array, value, match",
  [
    ("ids", -4, r"data split 'valid': id -4 at row 3, field 'cat1' is outside"),
    ("label", 2.0, r"data split 'valid': labels must lie in \[0, 1\], got range \[0.0, 2.0\]"),
    ("label", np.nan, r"data split 'valid': labels must lie in \[0, 1\]"),
  ],
)
def test_bad_ids_and_labels(dataset, wd, array, value, match):
  bad = copy.copy(dataset)
  bad.splits = {k: {n: np.array(a) for n, a in v.items()} for k, v in dataset.splits.items()}
  if array == "ids":
    bad.splits["valid"]["ids"][3, 1] = value
  else:
    bad.splits["valid"]["label"][3] = value
  with pytest.raises(DataError, match=match):
    preflight.preflight(quick_config(), bad, wd)


def test_nothing_to_compress_allowed_says_so_in_the_report(finished_quick, tmp_path, monkeypatch):
  _, workdir, _ = finished_quick
  copy_dir = str(tmp_path / "copy")
  shutil.copytree(workdir, copy_dir)
  for stage_dir in ("quantize", "swap", "finetune"):
    shutil.rmtree(os.path.join(copy_dir, stage_dir))
  monkeypatch.setattr(loop, "_train", lambda *a, **k: pytest.fail("stage A is finished"))
  config = quick_config()
  config.quantize.min_vocab = 10**6
  config.quantize.allow_nothing_to_compress = True
  report = pipeline.run(config, copy_dir)
  assert "min_vocab=1000000 is above every field's vocabulary" in report["nothing_compressed"]
  assert "compressed" not in report and report["compressed_fields"] == {}
  assert report["memory"]["ratio_packed"] == 1.0
  assert not os.path.exists(os.path.join(copy_dir, "finetune"))
  markdown = open(os.path.join(copy_dir, "report.md")).read()
  assert "**No field was compressed**: nothing to compress" in markdown
