"""Code balance against weighted k-means on one stage-A table: what the selection rule ships.

For a table written by stage A (``<workdir>/pretrain/tables/<field>.npz``: ``embedding``,
``counts``) or `bench/quantizer.py`'s synthetic Zipf table, prints one markdown row per run:
popularity-weighted reconstruction error of the artifact (all rows, and relative to weighted
k-means with seed 0), usage entropy / ln K (mean over sub-spaces), how many rare rows (train count
<= 3) get a code tuple of their own, how many distinct tuples the rare rows use (and that per rare
row), the mean number of rows sharing a rare row's tuple, and the epoch kept / epochs run.
``--kmeans_seeds`` repeats weighted k-means with other seeds, which shows how much of a difference
is the spread between k-means local optima.

Run: ``python bench/code_balance.py --table DIR/pretrain/tables/cat0.npz --num_subspaces 2
--run mec --run mec:selection=error --run no_balance --run mec:learning_rate=0.01``
(a run is ``variant[:field=value,...]`` of `QuantizeSettings`; its ``seed`` is also its PRNG key).
The Zipf fixture of the rare-row tests: ``--vocab 4000 --dim 16 --interactions 5 --seed 1
--num_subspaces 2 --codebook_size 64``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import numpy as np
from quantizer import zipf_table  # bench/quantizer.py: bench/ is the script's directory

from mec_jax.compression import QuantizeSettings, quantize_table


def parse_run(text: str) -> tuple[str, dict]:
  """``"mec:learning_rate=0.01,selection=error"`` -> ``("mec", {...})`` typed like the fields."""
  variant, _, rest = text.partition(":")
  fields = {f.name for f in dataclasses.fields(QuantizeSettings)}
  overrides = {}
  for item in filter(None, rest.split(",")):
    name, value = item.split("=", 1)
    if name not in fields:
      raise ValueError(f"unknown QuantizeSettings field {name!r}")
    default = getattr(QuantizeSettings, name)
    overrides[name] = value.lower() == "true" if isinstance(default, bool) else type(default)(value)
  return variant, overrides


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--table", default="", help="stage-A table .npz; empty: synthetic Zipf")
  parser.add_argument("--vocab", type=int, default=50_000)
  parser.add_argument("--dim", type=int, default=40, help="synthetic table: row dim")
  parser.add_argument("--interactions", type=int, default=40, help="synthetic: counts per row")
  parser.add_argument("--num_subspaces", type=int, default=4)
  parser.add_argument("--codebook_size", type=int, default=256)
  parser.add_argument("--kmeans_seeds", type=int, default=1)
  parser.add_argument("--run", action="append", default=[], help="variant[:field=value,...]")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  if args.table:
    arrays = np.load(args.table)
    table, counts = arrays["embedding"], arrays["counts"]
  else:
    table, counts = zipf_table(
      args.vocab, args.dim, 32, args.interactions * args.vocab, 1.1, args.seed
    )
  rare = int((counts <= 3).sum())
  print(f"table {table.shape}, {rare} rare rows (train count <= 3)\n")
  runs = [("kmeans", {"seed": s}) for s in range(args.kmeans_seeds)]
  runs += [parse_run(text) for text in args.run]
  print(
    "| run | weighted err | vs k-means | entropy / ln K | rare rows with a tuple of their own "
    "| distinct tuples of the rare rows | rows per rare row's tuple | kept / run |"
  )
  print("|---|---|---|---|---|---|---|---|")
  baseline = None
  for variant, overrides in runs:
    settings = QuantizeSettings(
      variant=variant,
      num_subspaces=args.num_subspaces,
      codebook_size=args.codebook_size,
      **{"seed": args.seed, **overrides},
    )
    start = time.perf_counter()
    compressed = quantize_table(jax.random.key(settings.seed), table, counts, settings)
    stats = compressed.stats
    error = stats["recon_error_weighted"]
    baseline = baseline or error
    distinct = round(stats.get("rare_distinct_fraction", 0.0) * rare)
    tuples = round(stats.get("rare_tuple_fraction", 0.0) * rare)
    label = variant + (
      "" if not overrides else " " + ", ".join(f"{k}={v}" for k, v in overrides.items())
    )
    print(
      f"| {label} | {error:.5g} | {100 * (error / baseline - 1):+.2f}% "
      f"| {float(np.mean(compressed.usage_entropy)):.4f} | {distinct} ({distinct / max(rare, 1):.4f}) "
      f"| {tuples} ({tuples / max(rare, 1):.4f}) "
      f"| {stats.get('rare_mean_rows_per_code', float('nan')):.0f} "
      f"| {stats['best_epoch']} / {stats['epochs_run']} |",
      flush=True,
    )
    print(f"{label}: {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
  main()
