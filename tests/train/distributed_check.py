"""Run by test_distributed.py as one of N processes (not a test itself).

``python distributed_check.py WORKDIR OUT PROCESS_ID NUM_PROCESSES PORT``: joins a
``jax.distributed`` runtime on localhost (CPU collectives) when NUM_PROCESSES > 1, trains a tiny
DeepFM with row-sparse tables (sharded across the processes) through `loop.fit` (Orbax
multi-process checkpoints, per-process batch slices), and process 0 saves the trained tables and
test metrics to OUT (.npz). Prints OK on success.
"""

import sys

import numpy as np
import toy_sparse  # this directory is on sys.path: the script runs from it

from mec_jax.train import distributed, loop

VOCABS = [64, 21, 3]


def splits():
  """The toy Zipf splits at this check's sizes (512 / 190 / 170 rows)."""
  return toy_sparse.splits(VOCABS, rows=(512, 190, 170), exponent=1.4)


def main(workdir, out, process_id, num_processes, port):
  process_id, num_processes = int(process_id), int(num_processes)
  if num_processes > 1:
    assert distributed.initialize(f"localhost:{port}", num_processes, process_id)
  model = toy_sparse.model(VOCABS)
  config = loop.TrainConfig(
    batch_size=64, eval_batch_size=128, epochs=2, learning_rate=1e-2, checkpoint_every_steps=3,
    log_every_steps=4, progress=False, sparse_min_rows=20, sparse_optimizer="rowwise_adagrad",
    sparse_learning_rate=0.05,
  )  # fmt: skip
  result = loop.fit(model, splits(), train_config=config, workdir=workdir)
  if distributed.is_writer():
    tables = {f"table_{f}": t for f, t in enumerate(toy_sparse.tables(model))}
    np.savez(out, test_auc=result.test["auc"], steps=result.steps, **tables)
  print("OK")


if __name__ == "__main__":
  sys.exit(main(*sys.argv[1:]))
