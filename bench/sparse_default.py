"""Stage-A test AUC of the row-sparse default against dense Adam, per dataset, over seeds (issue 23).

Each cell is one ``nice -n 19 python -m mec_jax.main --config.stage=pretrain`` run (DeepFM stage A
with early stopping) with the cell's ``--config`` overrides; seeds vary ``train.seed`` (2024 + s)
on fixed data. Datasets:

* ``criteo``: ``configs/criteo.py`` on a Criteo_x1-layout set written by `criteo_layout`
  (``--rows`` train rows, generator seed 0) with ``data.min_count=1`` (the issue's setting: every
  train value gets an id, so the hashed-id fields keep their long tails);
* ``synthetic``: ``configs/synthetic.py`` as it is.

A run whose ``pretrain/result.json`` exists is read, not rerun, so the script resumes. Prints, per
dataset and cell, valid and test AUC mean ± std over seeds and the test AUC difference to dense Adam
paired by seed.

Run: ``python bench/sparse_default.py --root /tmp/sparsedef [--datasets criteo,synthetic]
[--cells dense,rowwise_adagrad,lazy_adam] [--seeds 0,1,2] [--jobs 1]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys

import _common
import criteo_layout
import numpy as np

CONFIGS = {"criteo": "configs/criteo.py", "synthetic": "configs/synthetic.py"}
# Cell name -> overrides of train.*; "default" is whatever configs/default.py says today.
CELLS = {
  "dense": {"sparse_min_rows": 0},
  "default": {},
  "rowwise_adagrad": {"sparse_optimizer": "rowwise_adagrad"},
  "lazy_adam": {"sparse_optimizer": "lazy_adam"},
  "rowwise_adagrad_lr0.01": {"sparse_optimizer": "rowwise_adagrad", "sparse_learning_rate": 0.01},
  "rowwise_adagrad_lr0.03": {"sparse_optimizer": "rowwise_adagrad", "sparse_learning_rate": 0.03},
}


def command(dataset: str, cell: str, seed: int, root: str, data_dir: str) -> list[str]:
  """The ``mec_jax.main`` command line of one run."""
  args = [
    "nice", "-n", "19", sys.executable, "-m", "mec_jax.main",
    f"--config={_common.REPO / CONFIGS[dataset]}",
    f"--workdir={os.path.join(root, 'runs', f'{dataset}_{cell}_s{seed}')}",
    "--config.stage=pretrain",
    f"--config.data.cache_dir={os.path.join(root, 'cache')}",
    f"--config.train.seed={2024 + seed}",
    "--config.train.progress=False",
  ]  # fmt: skip
  if dataset == "criteo":
    args += [f"--config.data.dir={data_dir}", "--config.data.min_count=1"]
  args += [f"--config.train.{key}={value}" for key, value in CELLS[cell].items()]
  return args


def run(dataset: str, cell: str, seed: int, root: str, data_dir: str) -> dict:
  """Runs (or reads) one cell; returns its ``pretrain/result.json``."""
  workdir = os.path.join(root, "runs", f"{dataset}_{cell}_s{seed}")
  result = os.path.join(workdir, "pretrain", "result.json")
  if not os.path.exists(result):
    log = os.path.join(root, f"{dataset}_{cell}_s{seed}.log")
    with open(log, "w") as out:
      subprocess.run(
        command(dataset, cell, seed, root, data_dir), check=True, stdout=out, stderr=out
      )
  with open(result) as f:
    return json.load(f)


def _fmt(values) -> str:
  return f"{np.mean(values):.5f} ± {np.std(values):.5f}"


def table(results: dict, datasets, cells, seeds) -> str:
  """Markdown table: one row per (dataset, cell)."""
  lines = [
    "| dataset | stage A | valid AUC | test AUC, seeds " + " / ".join(map(str, seeds))
    + " | test AUC mean ± std | Δ vs dense (paired) | best epochs |",
    "|---|---|---|---|---|---|---|",
  ]  # fmt: skip
  for dataset in datasets:
    dense = [results.get((dataset, "dense", s)) for s in seeds]
    for cell in cells:
      runs = [results.get((dataset, cell, s)) for s in seeds]
      if any(r is None for r in runs):
        continue
      test = [r["test"]["auc"] for r in runs]
      valid = [r["valid"]["auc"] for r in runs]
      delta = "–"
      if cell != "dense" and all(d is not None for d in dense):
        delta = _fmt([t - d["test"]["auc"] for t, d in zip(test, dense, strict=True)])
      lines.append(
        f"| {dataset} | {cell} | {_fmt(valid)} | {' / '.join(f'{t:.5f}' for t in test)} | "
        f"{_fmt(test)} | {delta} | {', '.join(str(r['best_epoch']) for r in runs)} |"
      )
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default="/tmp/sparsedef", help="workdirs, logs, cache, data")
  parser.add_argument("--datasets", default="criteo,synthetic")
  parser.add_argument("--cells", default="dense,rowwise_adagrad,lazy_adam")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--rows", type=int, default=100_000, help="Criteo-layout train rows")
  parser.add_argument("--jobs", type=int, default=1, help="runs at once")
  parser.add_argument("--table_only", action="store_true", help="print finished runs; run none")
  args = parser.parse_args()
  datasets, cells = args.datasets.split(","), args.cells.split(",")
  seeds = [int(s) for s in args.seeds.split(",")]
  for name in datasets + cells:
    if name not in CONFIGS and name not in CELLS:
      raise SystemExit(f"sparse_default.py: unknown dataset or cell {name!r}")
  data_dir = os.path.join(args.root, f"criteo{args.rows // 1000}k")
  if (
    "criteo" in datasets
    and not args.table_only
    and not os.path.exists(os.path.join(data_dir, "test.csv"))
  ):
    criteo_layout.write(data_dir, args.rows, seed=0)
  jobs = [(d, c, s) for d in datasets for s in seeds for c in cells]
  results = {}
  if args.table_only:
    for job in jobs:
      path = os.path.join(args.root, "runs", "{}_{}_s{}".format(*job), "pretrain", "result.json")
      if os.path.exists(path):
        with open(path) as f:
          results[job] = json.load(f)
    jobs = []
  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    futures = {pool.submit(run, *job, args.root, data_dir): job for job in jobs}
    for future in concurrent.futures.as_completed(futures):
      job = futures[future]
      try:
        results[job] = future.result()
        print(f"{job}: test AUC {results[job]['test']['auc']:.5f}", flush=True)
      except subprocess.CalledProcessError as error:
        print(f"{job}: failed ({error}); see the log under {args.root}", flush=True)
  print(table(results, datasets, cells, seeds))


if __name__ == "__main__":
  main()
