"""Stage-B variants on a Zipf-weighted synthetic table: quality, code usage and throughput.

The table imitates what stage A hands over: V values with Zipf popularity; each value has a
latent cluster identity (``--clusters`` centres in an 8-d space, mapped to ``--dim``); how much of
that signal its embedding has learned grows with its train count ``n_v`` (``1 - exp(-n_v / 5)``),
the rest is initialization noise. Rare values therefore sit in a cloud of near-noise rows.

Printed (markdown): per variant, the popularity-weighted and unweighted mean squared row error
of ``CompressedTable.reconstruct()``, the same relative to the table's variance, usage entropy /
ln K (mean over sub-spaces, unweighted and popularity-weighted), the share of rare rows (train
count <= 3) whose code tuple is unique, the mean number of rows sharing a rare row's code tuple,
the held-out error of the shipped refit at the k-means start and at the epoch kept (what early
stopping compares; the per-epoch history goes to stderr), epochs run (kept), wall time and
training throughput (rows/s, after the compiling first epoch).

Run: ``python bench/quantizer.py [--vocab 50000 --dim 40 --variants mec,reference,...]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import numpy as np

from mec_jax.compression import QuantizeSettings, quantize_table

VARIANTS = ("mec", "reference", "no_balance", "no_pwr", "no_contrastive", "kmeans")


def zipf_table(
  vocab: int, dim: int, clusters: int, interactions: int, exponent: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """``(table float32 [vocab, dim], counts int64 [vocab])`` as described in the module doc."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(clusters, 8))
  latent = centres[rng.integers(0, clusters, vocab)] + 0.3 * rng.normal(size=(vocab, 8))
  signal = latent @ rng.normal(size=(8, dim)) / np.sqrt(8)
  popularity = np.arange(1, vocab + 1, dtype=np.float64) ** -exponent
  counts = rng.multinomial(interactions, popularity / popularity.sum())[rng.permutation(vocab)]
  learned = 1.0 - np.exp(-counts / 5.0)
  noise = 0.3 * rng.normal(size=(vocab, dim))
  table = learned[:, None] * signal + noise
  return (0.05 * table).astype(np.float32), counts.astype(np.int64)


def run_variant(key, table, counts, settings: QuantizeSettings) -> dict:
  start = time.perf_counter()
  compressed = quantize_table(key, table, counts, settings)
  stats = compressed.stats
  return {
    "variant": settings.variant,
    "w_err": stats["recon_error_weighted"],
    "u_err": stats["recon_error_unweighted"],
    "w_rel": stats["recon_error_weighted_relative"],
    "entropy": float(np.mean(compressed.usage_entropy)),
    "entropy_w": float(np.mean(stats["usage_entropy_weighted"])),
    "rare_unique": stats.get("rare_distinct_fraction", float("nan")),
    "rare_share": stats.get("rare_mean_rows_per_code", float("nan")),
    "start_err": stats.get("kmeans_error", float("nan")),
    "kept_err": stats.get("shipped_error", float("nan")),
    "history": [round(h["shipped_error"], 5) for h in stats.get("history", [])],
    "epochs": stats.get("epochs_run", 0),
    "best": stats.get("best_epoch", 0),
    "seconds": time.perf_counter() - start,
    "rows_per_s": stats.get("train_rows_per_second") or float("nan"),
  }


def print_table(rows: list[dict]) -> None:
  header = (
    "| variant | weighted err | unweighted err | weighted err / var | entropy/lnK | "
    "weighted entropy/lnK | rare unique | rows per rare code | held-out err: k-means start "
    "| held-out err: kept | epochs (best) | s | train rows/s |"
  )
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  for r in rows:
    print(
      f"| {r['variant']} | {r['w_err']:.5f} | {r['u_err']:.5f} | {r['w_rel']:.4f} | "
      f"{r['entropy']:.4f} | {r['entropy_w']:.4f} | {r['rare_unique']:.4f} | "
      f"{r['rare_share']:.2f} | {r['start_err']:.5f} | {r['kept_err']:.5f} | "
      f"{r['epochs']} ({r['best']}) | {r['seconds']:.1f} | "
      f"{r['rows_per_s']:.0f} |"
    )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--vocab", type=int, default=50_000)
  parser.add_argument("--dim", type=int, default=40)
  parser.add_argument("--clusters", type=int, default=32)
  parser.add_argument("--interactions", type=int, default=2_000_000)
  parser.add_argument("--zipf", type=float, default=1.1)
  parser.add_argument("--num_subspaces", type=int, default=4)
  parser.add_argument("--codebook_size", type=int, default=256)
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--batch_size", type=int, default=4096)
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--set", action="append", default=[], help="extra QuantizeSettings field=value, repeatable"
  )
  args = parser.parse_args()

  table, counts = zipf_table(
    args.vocab, args.dim, args.clusters, args.interactions, args.zipf, args.seed
  )
  print(
    f"table {table.shape}, {int((counts <= 3).sum())} rare rows (count <= 3), "
    f"{int((counts == 0).sum())} unseen, max count {counts.max()}, devices {jax.devices()}\n"
  )
  extra = {}
  fields = {f.name: f for f in dataclasses.fields(QuantizeSettings)}
  for item in args.set:
    name, value = item.split("=", 1)
    extra[name] = type(getattr(QuantizeSettings, name))(value) if name in fields else value
  rows = []
  for variant in args.variants.split(","):
    settings = QuantizeSettings(
      variant=variant,
      num_subspaces=args.num_subspaces,
      codebook_size=args.codebook_size,
      epochs=args.epochs,
      batch_size=args.batch_size,
      seed=args.seed,
      **extra,
    )
    rows.append(run_variant(jax.random.key(args.seed), table, counts, settings))
    print(f"done {variant}: {rows[-1]}", file=sys.stderr)
  print_table(rows)


if __name__ == "__main__":
  main()
