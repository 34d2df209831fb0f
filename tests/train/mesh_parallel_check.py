"""Run by test_data_parallel.py in a fresh process with 8 host CPU devices (not a test itself).

On ``('data', 'model')`` meshes (``train.model_axis_size`` 2 and 4): sparse train steps and eval
equal the 1-device ones; each device holds 1/k of every sparse table (rows on ``model``), small
tables and dense layers stay replicated, and no collective is table-sized. A row-sparse run
killed on a (4, 2) mesh resumes on 1 device and on the 1-D (8,) mesh (other row paddings) to the
uninterrupted 1-device result. Prints OK on success.
"""

import json
import shutil
import sys
import tempfile

import jax
import numpy as np
import sparse_parallel_check as parallel
import toy_sparse
from jax.sharding import PartitionSpec as P

from mec_jax import mesh as meshes
from mec_jax.train import loop, sparse, steps
from mec_jax.train.checkpoint import Checkpointer

# 31 and 21 rows: padded to 32/22 on (4, 2) (rows split 2 ways), 32/24 on (8,), none on 1 device.
VOCABS = [31, 21, 3]
CONFIG = loop.TrainConfig(
  batch_size=64, eval_batch_size=256, epochs=2, learning_rate=1e-2, checkpoint_every_steps=4,
  log_every_steps=4, progress=False, sparse_min_rows=15, sparse_optimizer="rowwise_adagrad",
  sparse_learning_rate=0.05, model_axis_size=2,
)  # fmt: skip


class Kill(Exception):
  pass


def steps_match_one_device() -> None:
  data = parallel.batches(3)
  _, tables1, losses1, probs1, _ = parallel.run(meshes.data_mesh(jax.devices()[:1]), data)
  for k in (2, 4):
    mesh = steps.train_mesh(k)
    assert dict(mesh.shape) == {"data": 8 // k, "model": k}, mesh.shape
    state, tables, losses, probs, hlos = parallel.run(mesh, data)
    np.testing.assert_allclose(losses, losses1, rtol=1e-5)
    np.testing.assert_allclose(probs, probs1, rtol=1e-5, atol=1e-7)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), tables, tables1
    )
    assert sparse.row_shards(mesh) == k
    for part in ("tables", "opt"):
      for name, array in state.sparse["field_0"][part].items():
        assert array.sharding.spec == P("model", *[None] * (array.ndim - 1)), (name, array.sharding)
        assert {s.data.shape[0] for s in array.addressable_shards} == {1000 // k}, name
    field_1 = state.sparse["field_1"]["tables"]["embedding"]
    assert field_1.shape[0] == sparse.padded_rows(13, k) == (14 if k == 2 else 16)
    small = state.params["embedding"]["tables"][2]["embedding"][...]  # 1 row: not sparse
    assert small.sharding.is_fully_replicated
    assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params))
    for hlo in hlos:
      big = parallel.big_collectives(hlo, parallel.VOCABS[0] // 2)
      assert not big, f"k={k}: table-sized collectives:\n" + "\n".join(big)


def model():
  return toy_sparse.model(VOCABS)


def splits():
  return toy_sparse.splits(VOCABS)


tables = toy_sparse.tables


def resume_across_meshes() -> None:
  one, eight = meshes.data_mesh(jax.devices()[:1]), meshes.data_mesh()
  data = splits()
  with tempfile.TemporaryDirectory() as tmp:
    whole = model()
    expected = loop.fit(whole, data, train_config=CONFIG, workdir=f"{tmp}/a", mesh=one)

    def kill(step):
      if step == 14:  # epoch 2, last checkpoint at step 12, saved on the (4, 2) mesh
        raise Kill()

    try:  # mesh=None: train.model_axis_size=2 builds the (4, 2) mesh
      loop.fit(model(), data, train_config=CONFIG, workdir=f"{tmp}/b", on_step=kill)
      raise AssertionError("the kill did not happen")
    except Kill:
      pass
    checkpoints = Checkpointer(f"{tmp}/b/pretrain/checkpoints")
    assert checkpoints.latest_step() == 12
    assert checkpoints.loop_state(12)["row_shards"] == 2  # padded for the 2-way row split
    checkpoints.close()
    shutil.copytree(f"{tmp}/b", f"{tmp}/c")
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for workdir, mesh in ((f"{tmp}/b", one), (f"{tmp}/c", eight)):
      resumed = model()
      result = loop.fit(resumed, data, train_config=CONFIG, workdir=workdir, mesh=mesh)
      assert result.steps == expected.steps == 20, (result.steps, expected.steps)
      np.testing.assert_allclose(result.test["auc"], expected.test["auc"], rtol=1e-5)
      jax.tree.map(close, tables(resumed), tables(whole))
      with open(f"{workdir}/pretrain/metrics.jsonl") as fh:
        events = [json.loads(line) for line in fh]
      assert [e["step"] for e in events if e["event"] == "resume"] == [12], workdir


def main():
  assert jax.device_count() == 8, jax.devices()
  steps_match_one_device()
  resume_across_meshes()
  print("OK")


if __name__ == "__main__":
  sys.exit(main())
