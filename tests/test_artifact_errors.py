"""Every damaged artifact (compressed table, stage-A table, cache entry, checkpoint) and every
failed write raises one `ArtifactError` that names the file and what is wrong."""

import errno
import hashlib
import json
import os

import jax
import numpy as np
import pytest

from configs import default
from mec_jax import artifacts
from mec_jax.compression.table import CompressedTable
from mec_jax.data import load_dataset
from mec_jax.data.schema import CATEGORICAL, FieldSpec
from mec_jax.errors import ArtifactError
from mec_jax.train.checkpoint import Checkpointer

FIELD = FieldSpec("cat0", CATEGORICAL, vocab_size=10, oov_id=9)


@pytest.fixture
def data_config():
  return default.get_config().data


@pytest.fixture
def table_file(tmp_path):
  rng = np.random.default_rng(0)
  table = CompressedTable(
    codes=rng.integers(0, 4, (10, 2)), codebooks=rng.normal(size=(2, 4, 3)), name="cat0"
  )
  path = str(tmp_path / "cat0.npz")
  table.save(path)
  return path


def _write(path, data: bytes) -> str:
  with open(path, "wb") as fh:
    fh.write(data)
  return path


def test_intact_table_loads(table_file):
  table = artifacts.load_compressed_table(table_file, FIELD, dim=6)
  assert table.codes.shape == (10, 2) and table.name == "cat0"


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_table(table_file, fraction):
  data = open(table_file, "rb").read()
  _write(table_file, data[: int(len(data) * fraction)])
  with pytest.raises(ArtifactError, match=rf"{table_file}: compressed table is damaged"):
    CompressedTable.load(table_file)


def test_garbage_bytes_and_flipped_bytes(table_file, tmp_path):
  garbage = _write(str(tmp_path / "garbage.npz"), os.urandom(3000))
  with pytest.raises(ArtifactError, match=rf"{garbage}: .*not an .npz archive: garbage bytes"):
    CompressedTable.load(garbage)
  data = bytearray(open(table_file, "rb").read())
  data[150:200] = os.urandom(50)  # inside the first member: its CRC no longer matches
  _write(table_file, bytes(data))
  with pytest.raises(ArtifactError, match=rf"{table_file}: compressed table is damaged"):
    CompressedTable.load(table_file)


def test_missing_file_keys_and_wrong_shapes(tmp_path, table_file):
  with pytest.raises(ArtifactError, match=r"nowhere.npz: no compressed table here"):
    CompressedTable.load(str(tmp_path / "nowhere.npz"))
  keys = str(tmp_path / "keys.npz")
  np.savez(keys, codes=np.zeros((10, 2), np.uint8))
  with pytest.raises(ArtifactError, match=r"keys.npz: compressed table lacks arrays \['codebooks'"):
    CompressedTable.load(keys)
  meta = np.frombuffer(b'{"name": "cat0"}', np.uint8)
  shape = str(tmp_path / "shape.npz")
  np.savez(shape, codes=np.zeros((10, 3), np.uint8), codebooks=np.ones((2, 4, 3)), meta=meta)
  with pytest.raises(
    ArtifactError, match=r"shape.npz: table 'cat0': codes must be \[vocab_size >= 1, 2\]"
  ):
    CompressedTable.load(shape)
  bad_meta = str(tmp_path / "meta.npz")
  np.savez(bad_meta, codes=np.zeros((10, 2), np.uint8), codebooks=np.ones((2, 4, 3)), meta=meta[:5])
  with pytest.raises(ArtifactError, match=r"meta.npz: compressed table has unreadable meta"):
    CompressedTable.load(bad_meta)
  # A valid table that belongs to another field size or model dimension.
  with pytest.raises(ArtifactError, match=r"10 ids x dim 6; field 'cat0' has 11 ids"):
    artifacts.load_compressed_table(table_file, FieldSpec("cat0", CATEGORICAL, 11, 10), dim=6)


def _rewrite(path, **changes):
  """Rewrites the ``.npz`` at ``path`` with some arrays replaced (None: dropped)."""
  with np.load(path) as npz:
    arrays = {key: npz[key] for key in npz.files}
  for key, value in changes.items():
    if value is None:
      arrays.pop(key)
    else:
      arrays[key] = value
  np.savez(path, **arrays)


def _meta(path) -> dict:
  with np.load(path) as npz:
    return json.loads(bytes(npz["meta"]).decode())


def _with_meta(meta: dict) -> np.ndarray:
  return np.frombuffer(json.dumps(meta).encode(), np.uint8)


def test_saved_table_records_digests_of_arrays_and_meta(table_file):
  digests = _meta(table_file)["sha256"]
  assert sorted(digests) == ["codebooks", "codes", "meta"]
  with np.load(table_file) as npz:  # an independent SHA-256 of the stored codes
    codes = npz["codes"]
  text = f"{codes.dtype.str}{list(codes.shape)}".encode() + codes.tobytes()
  assert digests["codes"] == hashlib.sha256(text).hexdigest()


@pytest.mark.parametrize(
  "case, match",
  [
    ("swapped", r"'codebooks' differs from its recorded SHA-256"),
    ("one value", r"'codebooks' differs from its recorded SHA-256"),
    ("codes", r"'codes' differs from its recorded SHA-256"),
    ("renamed", r"'meta' differs from its recorded SHA-256"),
    ("extra array", r"holds arrays \['codebooks', 'codes', 'extra'\] but records digests of"),
    ("dropped digest", r"records digests of \['codes', 'meta'\]"),
  ],
)
def test_tampered_table_is_an_artifact_error(table_file, case, match):
  with np.load(table_file) as npz:
    codebooks, codes = npz["codebooks"], npz["codes"]
  meta = _meta(table_file)
  if case == "swapped":  # two sub-spaces' codebooks exchanged: same shape, same bytes overall
    _rewrite(table_file, codebooks=codebooks[::-1].copy())
  elif case == "one value":
    codebooks = codebooks.copy()
    codebooks[1, 2, 0] += 1e-3
    _rewrite(table_file, codebooks=codebooks)
  elif case == "codes":
    _rewrite(table_file, codes=(codes + 1) % 4)
  elif case == "renamed":
    _rewrite(table_file, meta=_with_meta(meta | {"name": "cat1"}))
  elif case == "extra array":
    _rewrite(table_file, extra=np.zeros(2))
  else:
    del meta["sha256"]["codebooks"]
    _rewrite(table_file, meta=_with_meta(meta))
  with pytest.raises(ArtifactError, match=rf"{table_file}: .*{match}"):
    CompressedTable.load(table_file)


def test_table_without_digests_still_loads_and_bad_contents_are_refused(table_file):
  """Tables written before digests existed load with every other check; NaN codebooks and a
  table of no rows are refused either way."""
  meta = _meta(table_file)
  legacy = {key: meta[key] for key in ("name", "variant", "stats")}
  _rewrite(table_file, meta=_with_meta(legacy))
  table = CompressedTable.load(table_file)
  assert table.name == "cat0" and table.codes.shape == (10, 2)
  with np.load(table_file) as npz:
    codebooks, codes = npz["codebooks"].copy(), npz["codes"]
  codebooks[1, 3, 2] = np.nan
  _rewrite(table_file, codebooks=codebooks)
  with pytest.raises(ArtifactError, match=rf"{table_file}: codebooks hold 1 NaN/Inf values"):
    CompressedTable.load(table_file)
  _rewrite(table_file, codebooks=np.ones((2, 4, 3), np.float32), codes=codes[:0])
  with pytest.raises(ArtifactError, match=r"codes must be \[vocab_size >= 1, 2\], got \(0, 2\)"):
    CompressedTable.load(table_file)
  # A table saved with NaN codebooks fails its load even though its digests match.
  CompressedTable(codes=codes, codebooks=codebooks, name="cat0").save(table_file)
  with pytest.raises(ArtifactError, match=r"codebooks hold 1 NaN/Inf values"):
    CompressedTable.load(table_file)


def test_stage_a_tables(tmp_path):
  path = str(tmp_path / "tables" / "cat0.npz")
  embedding = np.ones((10, 4), np.float32)
  artifacts.save_stage_a_table(path, "cat0", embedding, np.zeros(10, np.float32), None)
  loaded, bias = artifacts.load_stage_a_table(path, FIELD, dim=4)
  np.testing.assert_array_equal(loaded, embedding)
  with pytest.raises(ArtifactError, match=r"cat0.npz: embedding \(10, 4\).*needs \(10, 8\)"):
    artifacts.load_stage_a_table(path, FIELD, dim=8)
  embedding[7, 1] = np.inf
  np.savez(path, embedding=embedding)
  with pytest.raises(ArtifactError, match=r"cat0.npz: embedding has NaN/Inf in 1 of 10 rows .*7"):
    artifacts.load_stage_a_table(path, FIELD, dim=4)
  # A diverged stage A saves nothing.
  other = str(tmp_path / "tables" / "cat1.npz")
  with pytest.raises(ArtifactError, match=r"table of field 'cat1' has NaN/Inf .*row 7"):
    artifacts.save_stage_a_table(other, "cat1", embedding, None, None)
  assert not os.path.exists(other)


@pytest.fixture
def cache_entry(data_config, tmp_path):
  data_config.name = "synthetic"
  data_config.synthetic.num_rows = 600
  data_config.synthetic.vocab_sizes = (30, 5)
  dataset = load_dataset(data_config, str(tmp_path / "cache"))
  return data_config, str(tmp_path / "cache"), dataset.cache_path


@pytest.mark.parametrize(
  "file, damage, match",
  [
    ("train_ids.npy", "truncate", r"train_ids.npy: cache file is damaged"),
    ("valid_label.npy", "garbage", r"valid_label.npy: cache file is damaged \(not a numpy file"),
    ("feature_map.json", "garbage", r"feature_map.json: cache file is damaged"),
    ("counts.npz", "truncate", r"feature_map.json: cache file is damaged.*BadZipFile"),
    ("test_ids.npy", "shape", r"test_ids.npy: shape \(3, 2\), expected \(60, 4\)"),
  ],
)
def test_damaged_cache_entry(cache_entry, file, damage, match):
  data_config, cache_dir, entry = cache_entry
  path = os.path.join(entry, file)
  if damage == "truncate":
    data = open(path, "rb").read()
    _write(path, data[: len(data) // 2])
  elif damage == "garbage":
    _write(path, os.urandom(500))
  else:
    np.save(path, np.zeros((3, 2), np.float32))
  with pytest.raises(ArtifactError, match=match):
    load_dataset(data_config, cache_dir)


def test_disk_full_while_writing_the_cache(data_config, tmp_path, monkeypatch):
  data_config.name = "synthetic"
  data_config.synthetic.num_rows = 600

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(np, "save", full)
  with pytest.raises(ArtifactError, match=r"cannot write the cache entry \(No space left on dev"):
    load_dataset(data_config, str(tmp_path))
  assert os.listdir(tmp_path) == []  # no half-written entry


def test_disk_full_during_an_orbax_save_keeps_the_last_checkpoint(tmp_path, monkeypatch):
  from orbax.checkpoint._src.handlers import json_checkpoint_handler

  state = {"w": jax.numpy.arange(6.0)}
  checkpointer = Checkpointer(str(tmp_path / "ckpt"))
  checkpointer.save(1, state, {"epoch": 1})
  checkpointer.wait()

  async def full(self, x, directory):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", full)
  with pytest.raises(ArtifactError, match=r"ckpt: cannot save checkpoint step 2: .*No space left"):
    checkpointer.save(2, state, {"epoch": 2})
    checkpointer.wait()
  checkpointer.close()  # after a failed save, closing does not raise it again
  monkeypatch.undo()
  again = Checkpointer(str(tmp_path / "ckpt"))
  assert again.all_steps() == [1]
  restored, loop_state = again.restore(1, state)
  assert loop_state == {"epoch": 1}
  np.testing.assert_array_equal(restored["w"], state["w"])
  again.close()


def test_damaged_checkpoint(tmp_path):
  state = {"w": jax.numpy.arange(6.0)}
  checkpointer = Checkpointer(str(tmp_path / "ckpt"))
  checkpointer.save(1, state, {"epoch": 1})
  checkpointer.wait()
  for root, _, files in os.walk(tmp_path / "ckpt" / "1" / "state"):
    for name in files:
      _write(os.path.join(root, name), os.urandom(64))
  with pytest.raises(ArtifactError, match=r"ckpt: cannot restore checkpoint step 1: .*delete"):
    checkpointer.restore(1, state)
  with pytest.raises(ArtifactError, match=r"no checkpoint at step 5; available \[1\]"):
    checkpointer.restore(5, state)
  checkpointer.close()


def test_checkpoint_from_before_a_state_field_existed_restores(tmp_path):
  """A stage-A checkpoint written before `TrainState.sparse` existed restores into a state whose
  ``sparse`` is empty; a field that is not empty in the target still has to be on disk."""
  from mec_jax.train.steps import TrainState

  legacy = {"step": jax.numpy.int32(7), "params": {"w": jax.numpy.arange(4.0)}, "other": {}}
  legacy["opt_state"] = {"mu": jax.numpy.ones(4)}
  checkpointer = Checkpointer(str(tmp_path / "ckpt"))
  checkpointer.save(7, legacy, {"epoch": 3})
  checkpointer.wait()
  target = TrainState(
    step=jax.numpy.int32(0),
    params={"w": jax.numpy.zeros(4)},
    other={},
    opt_state={"mu": jax.numpy.zeros(4)},
    sparse={},
  )
  restored, loop_state = checkpointer.restore(7, target)
  assert isinstance(restored, TrainState) and restored.sparse == {} and loop_state == {"epoch": 3}
  np.testing.assert_array_equal(restored.params["w"], legacy["params"]["w"])
  assert int(restored.step) == 7
  with_sparse = target.replace(sparse={"big": {"tables": jax.numpy.zeros(3)}})
  with pytest.raises(ArtifactError, match="cannot restore checkpoint step 7"):
    checkpointer.restore(7, with_sparse)
  checkpointer.close()
