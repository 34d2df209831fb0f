"""Does the test set tell two finished runs apart? Paired bootstrap of their test-AUC difference.

Each argument is a finished pipeline workdir (a grid cell's ``cells/<cell>/seed<seed>``): its
exported model (``export/``, the model ``report.json``'s ``compressed`` scores) scores the test
split of the dataset its ``config.json`` names, read from that config's ``data.cache_dir``. The
first workdir's full stage-A model (``export/full``) is scored too, so every run is compared
with it as well. Every model's AUC is checked against its ``report.json`` (to 1e-4) before the
bootstrap: a mismatch means the export is not the model the report scored.

Pairs: each later workdir against the first, and the first against its full model, by
`mec_jax.experiments.significance.paired_bootstrap` (one Poisson resample of the test rows shared by
both models). "resolved" means the interval excludes 0.

Run: ``python bench/paired_auc.py ROOT/cells/pq_head-...-r10/seed2024 ROOT/cells/qr-r10/seed2024``
(bench/RESULTS.md, "Paired test-set bootstrap").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from ml_collections import ConfigDict

from mec_jax.data import load_dataset
from mec_jax.experiments import significance
from mec_jax.export import serving
from mec_jax.train import metrics

BATCH = 65_536
REPORT_TOLERANCE = 1e-4  # AUC of the export vs report.json (batching changes float sums only)


def fail(message: str) -> None:
  print(f"paired_auc: {message}", file=sys.stderr)
  raise SystemExit(2)


def read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as err:
    fail(f"{path}: cannot read ({err}); expected a finished pipeline workdir")


def scores(export_dir: str, test: dict) -> np.ndarray:
  """Logits of the exported model over the test split, in row order."""
  model = serving.load(export_dir)
  ids, values = test["ids"], test["values"]
  out = [
    np.asarray(model(np.asarray(ids[i : i + BATCH]), np.asarray(values[i : i + BATCH])))
    for i in range(0, len(test["label"]), BATCH)
  ]
  return np.concatenate(out)


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "workdirs", nargs="+", help="finished pipeline workdirs (the first: reference)"
  )
  parser.add_argument("--resamples", type=int, default=1000)
  parser.add_argument("--level", type=float, default=0.95)
  parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
  args = parser.parse_args(argv)

  configs = [read_json(os.path.join(w, "config.json")) for w in args.workdirs]
  data = configs[0]["data"]

  def rows_of(config: dict) -> dict:  # what picks the test rows (the cache only stores them)
    return {k: v for k, v in config["data"].items() if k != "cache_dir"}

  for workdir, config in zip(args.workdirs[1:], configs[1:], strict=True):
    if rows_of(config) != rows_of(configs[0]):
      fail(f"{workdir}: its data config differs from {args.workdirs[0]}'s: not the same test rows")
  dataset = load_dataset(ConfigDict(data), data["cache_dir"])
  test = dataset.splits["test"]
  labels = np.asarray(test["label"])

  reports = [read_json(os.path.join(w, "report.json")) for w in args.workdirs]
  runs = []  # (name, export directory, report AUC)
  for workdir, report in zip(args.workdirs, reports, strict=True):
    if "compressed" not in report:
      fail(f"{workdir}/report.json: no 'compressed' result; expected a finished stage B/C run")
    runs.append((workdir, os.path.join(workdir, "export"), report["compressed"]["test_auc"]))
  full_export = os.path.join(args.workdirs[0], "export", "full")
  runs.append((f"{args.workdirs[0]} (full)", full_export, reports[0]["full"]["test_auc"]))

  print(f"test rows: {len(labels):,} ({labels.mean():.4f} positive); {args.resamples} resamples")
  logits = []
  for name, export_dir, reported in runs:
    t0 = time.perf_counter()
    s = scores(export_dir, test)
    auc = metrics.auc(labels, s, export_dir)
    if abs(auc - reported) > REPORT_TOLERANCE:
      fail(f"{export_dir}: test AUC {auc:.6f}, its report.json says {reported:.6f}")
    logits.append(s)
    print(f"  {auc:.6f} (report {reported:.6f}, {time.perf_counter() - t0:.0f} s)  {name}")

  pairs = [(i, 0) for i in range(1, len(args.workdirs))] + [(0, len(runs) - 1)]
  print(
    f"\n{'a':>3} {'b':>3} {'AUC a - b':>11} {'std':>9} {f'{args.level:.0%} interval':>24}  resolved"
  )
  for a, b in pairs:
    t0 = time.perf_counter()
    p = significance.paired_bootstrap(
      logits[a], logits[b], labels, resamples=args.resamples, level=args.level, seed=args.seed
    )
    print(
      f"{a:>3} {b:>3} {p.diff:>+11.6f} {p.std:>9.6f} [{p.low:+.6f}, {p.high:+.6f}]  "
      f"{'yes' if p.resolved else 'no'} ({time.perf_counter() - t0:.0f} s)"
    )
  print("\n" + "\n".join(f"{i}: {name}" for i, (name, _, _) in enumerate(runs)))


if __name__ == "__main__":
  main(sys.argv[1:])
