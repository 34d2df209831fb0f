"""What ``compress.method=auto`` would pick on a finished leaderboard grid, from its cells alone.

A candidate's sub-run is the grid cell of its method, protocol and seed (`mec_jax.auto`), so the
pick is `auto.pick` over those cells' records. For each (budget, seed): the pick, its test AUC, and
the best test AUC of any cell (every method and protocol); then per budget, over the seeds: the
pick's mean test AUC against each line's mean ± std, and whether it is the best or within one std.

  python bench/auto_pick.py /tmp/board/synthetic [--candidates pq cce cce:scratch hash:scratch]
"""

from __future__ import annotations

import argparse
import collections

import numpy as np

from mec_jax import auto
from mec_jax.configs import default
from mec_jax.experiments import runner
from mec_jax.methods import protocols


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("grid", help="a grid root of mec_jax.experiments (with cells/)")
  parser.add_argument(
    "--candidates", nargs="+", default=default.get_config().compress.auto_candidates
  )
  parser.add_argument("--monitor", default="auc_minus_logloss")
  args = parser.parse_args()
  cells = collections.defaultdict(dict)  # (budget, seed) -> {line name: record}
  for rec in runner.records_on_disk(args.grid):
    name = protocols.name_of(rec["overrides"])
    budget = float(rec["overrides"].get("compress.target_ratio", 0.0))
    if name is not None and budget:
      cells[budget, rec["seed"]][name] = rec
  picks = collections.defaultdict(list)  # budget -> picked test AUCs over seeds
  lines = collections.defaultdict(lambda: collections.defaultdict(list))  # budget -> name -> AUCs
  for (budget, seed), recs in sorted(cells.items()):
    test = {n: r["report"]["compressed"]["test_auc"] for n, r in recs.items() if "report" in r}
    for n, auc in test.items():
      lines[budget][n].append(auc)
    present = {n: recs[n] for n in args.candidates if n in recs}
    missing = [n for n in args.candidates if n not in recs]
    if missing:
      print(f"{budget:g}x seed {seed}: candidates not run {missing}; no pick")
      continue
    picked = auto.pick(present, args.monitor)
    picks[budget].append(test[picked])
    best = max(test, key=test.get)
    print(
      f"{budget:g}x seed {seed}: auto picks {picked} (test AUC {test[picked]:.4f}); best cell "
      f"{best} {test[best]:.4f} ({len(test)} cells)"
    )
  for budget, aucs in sorted(picks.items()):
    means = {
      n: (np.mean(v), np.std(v, ddof=1) if len(v) > 1 else 0.0, len(v))
      for n, v in lines[budget].items()
    }
    best = max(means, key=lambda n: means[n][0])
    mean, std, n = means[best]
    ok = np.mean(aucs) >= mean - std
    print(
      f"{budget:g}x: auto {np.mean(aucs):.4f} over {len(aucs)} seed(s); best line {best} "
      f"{mean:.4f} ± {std:.4f} (n={n}): {'within one std' if ok else 'NOT within one std'}"
    )


if __name__ == "__main__":
  main()
