"""Weighted k-means: mec_jax vs faiss-cpu vs scikit-learn on the same data, time and inertia.

Data: ``--rows`` x ``--dim`` float32 rows from a mixture of 64 Gaussians, with popularity
weights ``max(1, floor(log2 n))`` of Zipf-distributed counts. Every method gets the same rows,
weights, K and ``--iters`` Lloyd iterations (scikit-learn: ``n_init=1``, ``tol=0``, all rows;
faiss: all rows, and again with its default subsampling to 256 rows per centroid). Inertia is
recomputed the same way for all, as ``sum_i w_i min_k ||x_i - c_k||^2`` over the returned
centroids. mec_jax runs with its defaults (k-means++ and Lloyd on 256 rows per centroid sampled
by weight, ``--refine_iters`` Lloyd steps over all rows, one final assignment pass) and, with
``--full_batch``, also on all rows; each is timed twice: the first call includes jit
compilation, the second (another seed) does not. ``os.getloadavg()`` is printed with the table.

faiss and scikit-learn are optional: each is skipped with a message when not importable
(``pip install faiss-cpu``; neither is a test dependency).

Run: ``python bench/kmeans.py [--rows 1000000 --dim 10 --clusters 256 --iters 25]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from mec_jax.compression import popularity_weights, weighted_kmeans
from mec_jax.compression.kmeans import DEFAULT_REFINE_ITERS


def make_data(rows: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(64, dim)) * 2.0
  x = centres[rng.integers(0, 64, rows)] + rng.normal(size=(rows, dim))
  popularity = np.arange(1, rows + 1, dtype=np.float64) ** -1.1
  counts = rng.multinomial(20 * rows, popularity / popularity.sum())[rng.permutation(rows)]
  return x.astype(np.float32), popularity_weights(counts)


def inertia(x: np.ndarray, w: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> float:
  """``sum_i w_i min_k ||x_i - c_k||^2`` in float64, chunked."""
  c = centroids.astype(np.float64)
  c_sq = (c**2).sum(1)
  total = 0.0
  for start in range(0, x.shape[0], chunk):
    xb = x[start : start + chunk].astype(np.float64)
    d2 = (xb**2).sum(1)[:, None] - 2 * xb @ c.T + c_sq[None]
    total += float((w[start : start + chunk] * np.maximum(d2.min(1), 0)).sum())
  return total


def run_mec_jax(x, w, k, iters, seed, refine_iters, full_batch):
  out = []
  configs = [("", {"refine_iters": refine_iters})]
  if full_batch:
    configs.append((", all rows", {"max_points_per_centroid": None}))
  for suffix, kwargs in configs:
    for label, s in ((f"mec_jax{suffix} (incl. compile)", seed), (f"mec_jax{suffix}", seed + 1)):
      start = time.perf_counter()
      result = weighted_kmeans(jax.random.key(s), x, w, k, num_iters=iters, **kwargs)
      centroids = np.asarray(result.centroids)
      out.append((label, time.perf_counter() - start, centroids))
  return out


def run_faiss(x, w, k, iters, seed):
  try:
    import faiss
  except ImportError:
    print("faiss not importable: skipped (pip install faiss-cpu)", file=sys.stderr)
    return []
  out = []
  for label, points in (("faiss-cpu (all rows)", -(-x.shape[0] // k) + 1), ("faiss-cpu", 256)):
    km = faiss.Kmeans(
      x.shape[1], k, niter=iters, seed=seed, verbose=False, max_points_per_centroid=points
    )
    start = time.perf_counter()
    km.train(x, weights=w)
    out.append((f"{label} ({points} rows per centroid)", time.perf_counter() - start, km.centroids))
  return out


def run_sklearn(x, w, k, iters, seed):
  try:
    from sklearn.cluster import KMeans
  except ImportError:
    print("scikit-learn not importable: skipped", file=sys.stderr)
    return []
  km = KMeans(k, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd", random_state=seed)
  start = time.perf_counter()
  km.fit(x, sample_weight=w)
  return [
    (f"scikit-learn (n_init=1, max_iter={iters})", time.perf_counter() - start, km.cluster_centers_)
  ]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rows", type=int, default=1_000_000)
  parser.add_argument("--dim", type=int, default=10)
  parser.add_argument("--clusters", type=int, default=256)
  parser.add_argument("--iters", type=int, default=25)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--skip", default="", help="comma list of: faiss,sklearn")
  parser.add_argument("--refine_iters", type=int, default=DEFAULT_REFINE_ITERS)
  parser.add_argument("--full_batch", action="store_true", help="also run mec_jax on all rows")
  args = parser.parse_args()

  x, w = make_data(args.rows, args.dim, args.seed)
  print(
    f"{args.rows} x {args.dim} float32, K={args.clusters}, {args.iters} Lloyd iterations, "
    f"weights in [{w.min():.0f}, {w.max():.0f}], devices {jax.devices()}, "
    f"{os.cpu_count()} CPUs\n"
  )
  results = run_mec_jax(
    x, w, args.clusters, args.iters, args.seed, args.refine_iters, args.full_batch
  )
  skip = set(args.skip.split(","))
  if "faiss" not in skip:
    results += run_faiss(x, w, args.clusters, args.iters, args.seed)
  if "sklearn" not in skip:
    results += run_sklearn(x, w, args.clusters, args.iters, args.seed)
  best = None
  rows = []
  for label, seconds, centroids in results:
    value = inertia(x, w, np.asarray(centroids))
    best = value if best is None else min(best, value)
    rows.append((label, seconds, value))
  print("| method | seconds | weighted inertia | vs best |")
  print("|---|---|---|---|")
  for label, seconds, value in rows:
    print(f"| {label} | {seconds:.2f} | {value:.6g} | {value / best:.4f} |")
  print(f"\nload average {os.getloadavg()}")


if __name__ == "__main__":
  main()
