"""Parse / encode / cache throughput of the data layer, and synthetic generation time.

Writes a Criteo_x1-shaped CSV set (``train.csv``/``valid.csv``/``test.csv``, 13 integer + 26 hex
categorical columns, Zipf-distributed values, 10% empty cells) of ``--rows`` rows in total, then
times ``load_dataset`` parsing it (cold), loading it again from the cache (warm), and
`mec_jax.data.synthetic.generate` for ``--synthetic_rows`` rows.

  python bench/data_parse.py --rows 1000000 --synthetic_rows 1000000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import default  # noqa: E402
from mec_jax.data import load_dataset  # noqa: E402
from mec_jax.data.synthetic import SyntheticSpec, generate  # noqa: E402


def write_criteo_x1(directory: str, rows: int, seed: int = 0) -> int:
  """Writes the three CSVs (70/20/10 of ``rows``); returns their total size in bytes."""
  rng = np.random.default_rng(seed)
  pool = np.array([f"{v:08x}" for v in rng.integers(0, 2**32, 200_000)])
  total = 0
  for split, share in (("train", 0.7), ("valid", 0.2), ("test", 0.1)):
    n = int(rows * share)
    columns = {"label": pa.array((rng.random(n) < 0.25).astype(np.int8))}
    for i in range(1, 14):
      values = np.floor(np.exp(rng.normal(1.5, 1.5, n))).astype(np.int64)
      columns[f"I{i}"] = pa.array(values, mask=rng.random(n) < 0.1)
    for i in range(1, 27):
      vocab = int(rng.choice([10, 1_000, 100_000, 200_000]))
      picks = np.minimum(rng.zipf(1.2, n) - 1, vocab - 1)
      strings = pool[picks].astype(object)
      strings[rng.random(n) < 0.1] = ""
      columns[f"C{i}"] = pa.array(strings, type=pa.string())
    path = os.path.join(directory, f"{split}.csv")
    pa_csv.write_csv(
      pa.table(columns), path, write_options=pa_csv.WriteOptions(quoting_style="none")
    )
    total += os.path.getsize(path)
  return total


def _config(data_dir: str):
  config = default.get_config().data
  config.name, config.dir = "criteo_x1", data_dir
  return config


def _load(data_dir: str, cache_dir: str) -> tuple[float, int, int, int, int]:
  """Cold load in this process: (seconds, rows, encoded bytes, total vocab, peak RSS bytes)."""
  start = time.perf_counter()
  dataset = load_dataset(_config(data_dir), cache_dir)
  took = time.perf_counter() - start
  rows = sum(dataset.num_rows(s) for s in ("train", "valid", "test"))
  encoded = sum(a.nbytes for s in dataset.splits.values() for a in s.values())
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return took, rows, encoded, sum(dataset.feature_map.vocab_sizes), peak


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, default=1_000_000)
  parser.add_argument("--synthetic_rows", type=int, default=1_000_000)
  args = parser.parse_args()

  with tempfile.TemporaryDirectory() as tmp:
    data_dir, cache_dir = os.path.join(tmp, "criteo_x1"), os.path.join(tmp, "cache")
    os.makedirs(data_dir)
    start = time.perf_counter()
    size = write_criteo_x1(data_dir, args.rows)
    print(f"wrote {args.rows:,} rows, {size / 1e6:.0f} MB in {time.perf_counter() - start:.1f} s")

    # A fresh process, so that its peak memory is the load's alone.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
      cold, rows, encoded, vocab, peak = pool.apply(_load, (data_dir, cache_dir))
    print(
      f"parse+encode+cache: {cold:.1f} s = {rows / cold:,.0f} rows/s, {size / cold / 1e6:.0f} MB/s; "
      f"encoded arrays {encoded / 1e6:.0f} MB; total vocab {vocab:,}; peak RSS {peak / 1e6:.0f} MB"
    )
    start = time.perf_counter()
    load_dataset(_config(data_dir), cache_dir)
    print(f"cache hit: {time.perf_counter() - start:.2f} s")

  spec = SyntheticSpec(num_rows=args.synthetic_rows)
  start = time.perf_counter()
  frame, _, _ = generate(spec)
  took = time.perf_counter() - start
  print(
    f"synthetic.generate({args.synthetic_rows:,} rows, vocab {spec.vocab_sizes}): {took:.1f} s, "
    f"label rate {frame['label'].mean():.4f}"
  )


if __name__ == "__main__":
  main()
