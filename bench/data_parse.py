"""Parse / encode / cache throughput and peak memory of the streamed data layer, at Criteo_x1 shape.

Writes a Criteo_x1-shaped CSV set (``train.csv``/``valid.csv``/``test.csv`` = 70/20/10 of ``--rows``;
13 integer columns with 10% empty cells, 26 hex-hash categorical columns with Criteo's per-field
cardinalities and Zipf popularity) chunk by chunk into ``--dir`` (a temp dir by default, deleted at
the end), then times ``load_dataset`` parsing it cold in a fresh process (its peak RSS is its own),
loading it again from the cache, and `mec_jax.data.synthetic.generate` for ``--synthetic_rows``.

  flock /tmp/mec_heavy.lock python bench/data_parse.py --rows 20000000 --synthetic_rows 0
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import tempfile
import time

import _common  # noqa: F401  (makes the checkout's configs package importable)
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from configs import default
from mec_jax.data import load_dataset
from mec_jax.data.synthetic import SyntheticSpec, generate

# Distinct values of C1..C26 in the full Criteo data (the Kaggle release); Zipf exponents below 1
# for the huge ones, so that millions of them are realized, as in the real logs.
CRITEO_CARDINALITIES = (
  1460, 583, 10_131_227, 2_202_608, 305, 24, 12_517, 633, 3, 93_145, 5_683, 8_351_593, 3_194, 27,
  14_992, 5_461_306, 10, 5_652, 2_173, 4, 7_046_547, 18, 15, 286_181, 105, 142_572,
)  # fmt: skip
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_CHUNK_ROWS = 500_000


def zipf_ranks(rng, vocab: int, exponent: float, size: int) -> np.ndarray:
  """Ranks in ``[0, vocab)`` with probability ~ ``(rank + 1) ** -exponent`` (continuous inverse CDF)."""
  u = rng.random(size)
  if abs(exponent - 1.0) < 1e-9:
    x = vocab**u
  else:
    x = (1.0 + u * ((vocab + 1.0) ** (1.0 - exponent) - 1.0)) ** (1.0 / (1.0 - exponent))
  return np.minimum(x.astype(np.int64) - 1, vocab - 1).clip(0)


def hex_strings(values: np.ndarray) -> pa.Array:
  """uint32 values as 8-digit lowercase hex strings, vectorized."""
  shifts = np.arange(28, -1, -4, dtype=np.uint64)
  digits = _HEX[(values.astype(np.uint64)[:, None] >> shifts) & 0xF]
  return pa.array(digits.view("S8").ravel()).cast(pa.string())


def write_criteo_x1(directory: str, rows: int, seed: int = 0) -> int:
  """Writes the three CSVs in chunks of 500k rows; returns their total size in bytes."""
  rng = np.random.default_rng(seed)
  exponents = [0.9 if v > 1_000_000 else 1.1 for v in CRITEO_CARDINALITIES]
  total = 0
  for split, share in (("train", 0.7), ("valid", 0.2), ("test", 0.1)):
    path = os.path.join(directory, f"{split}.csv")
    writer = None
    remaining = int(rows * share)
    while remaining > 0:
      n = min(_CHUNK_ROWS, remaining)
      remaining -= n
      columns = {"label": pa.array((rng.random(n) < 0.25).astype(np.int8))}
      for i in range(1, 14):
        values = np.floor(np.exp(rng.normal(1.5, 1.5, n))).astype(np.int64) - (i == 2)
        columns[f"I{i}"] = pa.array(values, mask=rng.random(n) < 0.1)
      for i, (vocab, a) in enumerate(zip(CRITEO_CARDINALITIES, exponents, strict=True), start=1):
        ranks = zipf_ranks(rng, vocab, a, n)
        hashes = (ranks * 2654435761 + i * 97) % (1 << 32)
        strings = hex_strings(hashes)
        empty = rng.random(n) < 0.05
        columns[f"C{i}"] = pa.compute.if_else(pa.array(empty), "", strings)
      table = pa.table(columns)
      if writer is None:
        writer = pa_csv.CSVWriter(
          path, table.schema, write_options=pa_csv.WriteOptions(quoting_style="none")
        )
      writer.write_table(table)
    writer.close()
    total += os.path.getsize(path)
  return total


def _config(data_dir: str):
  config = default.get_config().data
  config.name, config.dir = "criteo_x1", data_dir
  return config


def _load(data_dir: str, cache_dir: str) -> dict:
  """Cold load in this (fresh) process: seconds, rows, encoded bytes, vocab, peak RSS."""
  start = time.perf_counter()
  dataset = load_dataset(_config(data_dir), cache_dir)
  took = time.perf_counter() - start
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return {
    "seconds": took,
    "cpu_seconds": usage.ru_utime + usage.ru_stime,
    "rows": sum(dataset.num_rows(s) for s in ("train", "valid", "test")),
    "encoded": sum(a.nbytes for s in dataset.splits.values() for a in s.values()),
    "vocab": sum(dataset.feature_map.vocab_sizes),
    "peak": usage.ru_maxrss * 1024,
    "load": os.getloadavg(),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, default=1_000_000)
  parser.add_argument("--synthetic_rows", type=int, default=1_000_000)
  parser.add_argument("--dir", default="", help="where to write the CSVs (default: a temp dir)")
  args = parser.parse_args()

  tmp = tempfile.mkdtemp(prefix="mec-data-parse-", dir=args.dir or None)
  try:
    data_dir, cache_dir = os.path.join(tmp, "criteo_x1"), os.path.join(tmp, "cache")
    os.makedirs(data_dir)
    start = time.perf_counter()
    size = write_criteo_x1(data_dir, args.rows)
    print(f"wrote {args.rows:,} rows, {size / 1e9:.2f} GB in {time.perf_counter() - start:.0f} s")

    # A fresh process, so that its peak memory is the load's alone.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
      r = pool.apply(_load, (data_dir, cache_dir))
    rate = r["rows"] / r["seconds"]
    print(
      f"parse+encode+cache: {r['seconds']:.0f} s = {rate:,.0f} rows/s, "
      f"{size / r['seconds'] / 1e6:.0f} MB/s (loadavg {r['load'][0]:.1f}; "
      f"{r['cpu_seconds']:.0f} CPU s = {r['rows'] / r['cpu_seconds']:,.0f} rows per CPU s); encoded arrays "
      f"{r['encoded'] / 1e9:.2f} GB; total vocab {r['vocab']:,}; peak RSS {r['peak'] / 1e9:.2f} GB "
      f"= {r['peak'] / r['encoded']:.2f}x the encoded arrays"
    )
    print(
      f"extrapolated to Criteo_x1 (45.8M rows): {45.8e6 / rate / 60:.1f} min, encoded arrays "
      f"{r['encoded'] / r['rows'] * 45.8e6 / 1e9:.1f} GB"
    )
    start = time.perf_counter()
    load_dataset(_config(data_dir), cache_dir)
    print(f"cache hit: {time.perf_counter() - start:.2f} s")
  finally:
    shutil.rmtree(tmp, ignore_errors=True)

  if args.synthetic_rows:
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
