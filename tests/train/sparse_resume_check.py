"""Run by test_data_parallel.py in a fresh process with 8 host CPU devices (not a test itself).

A row-sparse run killed on 8 devices (tables padded to 8-row multiples) resumes on 2 devices
(other padding) to the result of an uninterrupted 1-device run; the finished run is then found
and restored on 8 devices again; a checkpoint whose tables changed size is refused with a
message. Prints OK on success.
"""

import sys
import tempfile

import jax
import numpy as np
import toy_sparse

from mec_jax import mesh as meshes
from mec_jax.errors import ArtifactError
from mec_jax.train import loop

VOCABS = [30, 20, 3]  # 30 and 20 rows: sparse, padded to 32 and 24 on 8 devices, none on 2
CONFIG = loop.TrainConfig(
  batch_size=64, eval_batch_size=256, epochs=2, learning_rate=1e-2, checkpoint_every_steps=4,
  log_every_steps=4, progress=False, sparse_min_rows=15, sparse_optimizer="lazy_adam",
)  # fmt: skip


class Kill(Exception):
  pass


def model(vocabs=VOCABS):
  return toy_sparse.model(vocabs)


def splits():
  return toy_sparse.splits(VOCABS)


tables = toy_sparse.tables


def main():
  assert jax.device_count() == 8, jax.devices()
  one, two, eight = (meshes.data_mesh(jax.devices()[:n]) for n in (1, 2, 8))
  data = splits()
  with tempfile.TemporaryDirectory() as tmp:
    whole = model()
    expected = loop.fit(whole, data, train_config=CONFIG, workdir=f"{tmp}/a", mesh=one)

    def kill(step):
      if step == 14:  # epoch 2, last checkpoint at step 12 (saved on 8 devices)
        raise Kill()

    try:
      loop.fit(model(), data, train_config=CONFIG, workdir=f"{tmp}/b", mesh=eight, on_step=kill)
      raise AssertionError("the kill did not happen")
    except Kill:
      pass
    resumed = model()
    result = loop.fit(resumed, data, train_config=CONFIG, workdir=f"{tmp}/b", mesh=two)
    assert result.steps == expected.steps == 20, (result.steps, expected.steps)
    np.testing.assert_allclose(result.test["auc"], expected.test["auc"], rtol=1e-5)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    jax.tree.map(close, tables(resumed), tables(whole))

    again = model()  # the finished run, found and restored on 8 devices
    found = loop.fit(again, data, train_config=CONFIG, workdir=f"{tmp}/b", mesh=eight)
    assert found.best_step == result.best_step
    jax.tree.map(np.testing.assert_array_equal, tables(again), tables(resumed))

    try:  # field 0 grown to 40 rows: padding cannot explain the saved shape
      loop.fit(model([40, 20, 3]), data, train_config=CONFIG, workdir=f"{tmp}/b", mesh=one)
      raise AssertionError("a changed table was restored")
    except ArtifactError as err:
      assert "field_0/tables/bias: saved shape (30,)" in str(err), err
  print("OK")


if __name__ == "__main__":
  sys.exit(main())
