"""Run by test_distributed.py as one of N processes (not a test itself).

``python distributed_check.py WORKDIR OUT PROCESS_ID NUM_PROCESSES PORT``: joins a
``jax.distributed`` runtime on localhost (CPU collectives) when NUM_PROCESSES > 1, trains a tiny
DeepFM with row-sparse tables (sharded across the processes) through `loop.fit` (Orbax
multi-process checkpoints, per-process batch slices), and process 0 saves the trained tables and
test metrics to OUT (.npz). Prints OK on success.
"""

import sys

import numpy as np
from flax import nnx

from mec_jax.layers import FieldEmbedding
from mec_jax.models import registry
from mec_jax.train import distributed, loop

VOCABS = [64, 21, 3]


def splits():
  rng = np.random.default_rng(0)
  out = {}
  for name, rows in (("train", 512), ("valid", 190), ("test", 170)):
    ids = np.stack([rng.zipf(1.4, rows) % v for v in VOCABS], axis=1).astype(np.int32)
    label = ((ids[:, 0] % 3 == 0) ^ (ids[:, 1] % 2 == 0)).astype(np.float32)
    out[name] = {"ids": ids, "values": np.ones(ids.shape, np.float32), "label": label}
  return out


def main(workdir, out, process_id, num_processes, port):
  process_id, num_processes = int(process_id), int(num_processes)
  if num_processes > 1:
    assert distributed.initialize(f"localhost:{port}", num_processes, process_id)
  rngs = nnx.Rngs(params=0, dropout=1)
  embedding = FieldEmbedding.full(VOCABS, 4, rngs=rngs, init_std=0.1)
  model = registry.build_model("deepfm", embedding, rngs=rngs, hidden_units=(8,))
  config = loop.TrainConfig(
    batch_size=64, eval_batch_size=128, epochs=2, learning_rate=1e-2, checkpoint_every_steps=3,
    log_every_steps=4, progress=False, sparse_min_rows=20, sparse_optimizer="rowwise_adagrad",
    sparse_learning_rate=0.05,
  )  # fmt: skip
  result = loop.fit(model, splits(), train_config=config, workdir=workdir)
  if distributed.is_writer():
    tables = {f"table_{f}": np.asarray(model.embedding.tables[f].embedding[...]) for f in (0, 1)}
    np.savez(out, test_auc=result.test["auc"], steps=result.steps, **tables)
  print("OK")


if __name__ == "__main__":
  sys.exit(main(*sys.argv[1:]))
