"""Stage A alone over a sweep file's overrides x seeds, validation-selected (resumable).

A `mec_jax.experiments` grid shares one stage A per seed across its cells, so it cannot sweep
stage A's own settings; this script runs ``config.stage = pretrain`` once per (override, seed) in
``DIR/<cell>/seed<seed>`` and prints valid/test AUC and logloss, mean ± std over seeds, and the
override with the best mean validation AUC. A finished run is read back, not retrained.

Run: ``nice -n 19 python bench/stage_a_sweep.py --sweep=configs/sweeps/stage_a_synthetic.py
--workdir=DIR [--seeds=2024,2025,2026] [--only=train.embedding_l2=0.001,...]``. Several
processes may share a workdir: a run another process holds is skipped.
"""

from __future__ import annotations

import argparse
import os
import time

import _common  # noqa: F401  (puts the checkout's configs package on sys.path)
import numpy as np
from absl import logging

from mec_jax import pipeline
from mec_jax.errors import BusyError
from mec_jax.experiments import runner
from mec_jax.train import loop


def _keep(overrides: dict, only: list[str]) -> bool:
  """Whether ``overrides`` sets one of the ``key=value`` items of ``only`` (empty: keep all)."""
  if not only:
    return True
  for item in only:
    key, _, value = item.partition("=")
    if key in overrides and float(overrides[key]) == float(value):
      return True
  return False


def run_one(config, overrides: dict, seed: int, root: str) -> dict:
  """Stage A of one override and seed; its metrics and seconds."""
  workdir = os.path.join(root, runner.cell_name({"compress.method": "stage_a", **overrides}))
  workdir = os.path.join(workdir, f"seed{seed}")
  cfg = runner.seeded(config, seed, os.path.join(root, "cache"), overrides)
  cfg.stage = "pretrain"
  start = time.time()
  pipeline.run(cfg, workdir)
  result = loop.load_result(workdir, "pretrain")
  return result.metrics() | {"seconds": time.time() - start, "best_epoch": result.best_epoch}


def main(sweep_path: str, root: str, seeds: list[int], only: list[str]) -> None:
  logging.set_verbosity(logging.WARNING)
  config, file_seeds, sweep, _ = runner.load_sweep(sweep_path)
  rows = {}
  for seed in seeds or file_seeds:
    for overrides in (o for o in sweep if _keep(o, only)):
      name = ", ".join(f"{k}={v:g}" for k, v in overrides.items())
      try:
        out = run_one(config, overrides, seed, root)
      except BusyError as err:  # another process of this sweep is on it
        print(f"{name} seed {seed}: skipped, {err}", flush=True)
        continue
      rows.setdefault(name, []).append(out)
      print(
        f"{name} seed {seed}: valid AUC {out['valid_auc']:.5f} test AUC {out['test_auc']:.5f} "
        f"test logloss {out['test_logloss']:.5f} epoch {out['best_epoch']} "
        f"{out['seconds']:.0f} s",
        flush=True,
      )
  print("\n| setting | seeds | valid AUC | test AUC | test logloss | best epoch |")
  print("|---|---|---|---|---|---|")
  if not rows:
    return
  best = max(rows, key=lambda n: np.mean([r["valid_auc"] for r in rows[n]]))
  for name, runs in rows.items():

    def stat(key, runs=runs):
      values = np.array([r[key] for r in runs])
      std = f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else ""
      return f"{values.mean():.4f}{std}"

    mark = " (best valid)" if name == best else ""
    epochs = ", ".join(str(r["best_epoch"]) for r in runs)
    print(
      f"| {name}{mark} | {len(runs)} | {stat('valid_auc')} | {stat('test_auc')} | "
      f"{stat('test_logloss')} | {epochs} |"
    )


def _list(text: str) -> list[str]:
  return [item for item in text.split(",") if item]


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sweep", default="configs/sweeps/stage_a_synthetic.py", help="sweep file")
  parser.add_argument("--workdir", required=True, help="root directory of the runs")
  parser.add_argument("--seeds", type=_list, default=[], help="seeds instead of the file's SEEDS")
  parser.add_argument(
    "--only", type=_list, default=[], help="key=value,...: the overrides with one of these values"
  )
  args = parser.parse_args()
  main(args.sweep, args.workdir, [int(s) for s in args.seeds], args.only)
