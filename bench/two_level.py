"""Two-level k-means against flat k-means: time, inertia and peak RSS on stage-A embeddings.

Rows: the first ``--rows`` rows of a stage-A table (``--table``, a workdir's
``pretrain/tables/<field>.npz``) or, without one, of a 64-Gaussian mixture. Both paths of
`mec_jax.compression.kmeans.batched_kmeans` cluster the same rows into ``--clusters`` clusters in
each of ``--columns`` sub-spaces, unweighted (as CCE's stage B) or, with ``--weighted``, with the
popularity weights of the table's counts: flat (``max_flat_pairs=math.inf``) and two-level
(``max_flat_pairs=1``). ``--skip_flat`` leaves flat out where it takes hours. Inertia is the
weighted sum over sub-spaces, recomputed in float64 from the returned codes; two-level's is
also given for a flat nearest search over its own centroids (``--exact``: a flat pass's cost).

Run: ``python bench/two_level.py --table=WORKDIR/pretrain/tables/cat1.npz --rows=100000
--clusters=1024``.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import jax
import numpy as np

from mec_jax.compression import popularity_weights
from mec_jax.compression.kmeans import batched_kmeans


def load_rows(table: str | None, rows: int, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
  if table is None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(64, 40)) * 2.0
    x = (centres[rng.integers(0, 64, rows)] + rng.normal(size=(rows, 40))).astype(np.float32)
    counts = rng.zipf(1.3, rows)
  else:
    with np.load(table) as stored:
      x = np.asarray(stored["embedding"][:rows], np.float32)
      counts = np.asarray(stored["counts"][:rows])
  weights = popularity_weights(counts) if weighted else np.ones(x.shape[0], np.float32)
  return x, np.asarray(weights, np.float32)


def codes_inertia(x, w, centroids, codes, columns: int) -> float:
  """``sum_m sum_i w_i ||x_im - c_m[code_im]||^2`` in float64."""
  sub = x.shape[1] // columns
  return sum(
    float((w * ((x[:, m * sub : (m + 1) * sub] - centroids[m][codes[:, m]]) ** 2).sum(1)).sum())
    for m in range(columns)
  )


def nearest_inertia(x, w, centroids, columns: int, chunk: int = 4096) -> float:
  """The same with each row's nearest centroid over all of them (a flat search)."""
  sub, total = x.shape[1] // columns, 0.0
  for m in range(columns):
    c = centroids[m].astype(np.float64)
    c_sq = (c**2).sum(1)
    for start in range(0, x.shape[0], chunk):
      xb = x[start : start + chunk, m * sub : (m + 1) * sub].astype(np.float64)
      d2 = (xb**2).sum(1)[:, None] - 2 * xb @ c.T + c_sq[None]
      total += float((w[start : start + chunk] * np.maximum(d2.min(1), 0)).sum())
  return total


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--table", default=None, help="a stage-A table .npz (default: a mixture)")
  parser.add_argument("--rows", type=int, default=100_000)
  parser.add_argument("--clusters", type=int, default=1024)
  parser.add_argument("--columns", type=int, default=4, help="sub-spaces (CCE's columns)")
  parser.add_argument("--iters", type=int, default=25)
  parser.add_argument("--weighted", action="store_true", help="popularity weights of the counts")
  parser.add_argument("--skip_flat", action="store_true")
  parser.add_argument("--exact", action="store_true", help="also a flat search over two-level's")
  args = parser.parse_args()
  x, w = load_rows(args.table, args.rows, args.weighted)
  keys = jax.random.split(jax.random.key(0), args.columns)
  print(f"{x.shape[0]:,} rows x {x.shape[1]}, {args.columns} sub-spaces, K = {args.clusters:,}")
  print(f"{'path':<10} {'seconds':>8} {'inertia':>12} {'vs flat':>8}")
  flat_inertia = None
  paths = (("two-level", 1),) if args.skip_flat else (("flat", math.inf), ("two-level", 1))
  for name, max_pairs in paths:
    start = time.perf_counter()
    result = batched_kmeans(
      keys, x, w, args.columns, args.clusters, num_iters=args.iters, max_flat_pairs=max_pairs
    )
    centroids = np.asarray(result.centroids)
    seconds = time.perf_counter() - start
    value = codes_inertia(x, w, centroids, result.assignments, args.columns)
    flat_inertia = value if name == "flat" else flat_inertia
    ratio = f"{value / flat_inertia:8.3f}" if flat_inertia else f"{'':8}"
    print(f"{name:<10} {seconds:8.1f} {value:12.4f} {ratio}", flush=True)
    if name == "two-level" and args.exact:
      exact = nearest_inertia(x, w, centroids, args.columns)
      ratio = f"{exact / flat_inertia:8.3f}" if flat_inertia else f"{'':8}"
      print(f"{'  nearest':<10} {'':8} {exact:12.4f} {ratio}  (two-level's centroids, flat search)")
  print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
  main()
