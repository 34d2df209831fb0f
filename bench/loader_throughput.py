"""Samples/s of the batch loader alone on Criteo-shaped rows from a memory-mapped cache.

Writes ``--rows`` rows of 39 fields (13 numeric + 26 categorical, as Criteo) to a temporary
directory in the layout `mec_jax.data.cache` uses (``train_ids.npy`` int32 ``[N, 39]``,
``train_numeric.npy`` float32 ``[N, 13]``, ``train_label.npy`` float32 ``[N]``), opens them
memory-mapped as `load_entry` does (``values`` a `FieldValues`), and times shuffled batches of
``--batch`` rows through `BatchLoader` (the Grain iterator with its prefetch thread), then the
gather of one batch alone (`BatchLoader.batch`), then the same with a host-to-device copy
(`jax.device_put`) of every batch.

  PYTHONPATH=. JAX_PLATFORMS=cpu python bench/loader_throughput.py [--rows 4000000] [--batch 8192]

The first pass over the arrays pages them in (the cache is on disk); timings start after one warm
epoch's worth of reads so they measure the loader, not the disk.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import numpy as np

from mec_jax.data.loader import BatchLoader
from mec_jax.data.values import FieldValues

NUM_NUMERIC, NUM_CATEGORICAL = 13, 26


def write_cache(directory: str, rows: int, seed: int = 0) -> dict:
  """Writes one Criteo-shaped split in the cache's layout; returns it memory-mapped."""
  rng = np.random.default_rng(seed)
  fields = NUM_NUMERIC + NUM_CATEGORICAL
  chunk = 1 << 20
  ids = np.lib.format.open_memmap(
    os.path.join(directory, "train_ids.npy"), "w+", np.int32, (rows, fields)
  )
  numeric = np.lib.format.open_memmap(
    os.path.join(directory, "train_numeric.npy"), "w+", np.float32, (rows, NUM_NUMERIC)
  )
  for start in range(0, rows, chunk):
    n = min(chunk, rows - start)
    ids[start : start + n] = rng.integers(0, 1 << 20, (n, fields), dtype=np.int32)
    numeric[start : start + n] = rng.standard_normal((n, NUM_NUMERIC), dtype=np.float32)
  ids.flush()
  numeric.flush()
  del ids, numeric
  label = (rng.random(rows) < 0.25).astype(np.float32)
  np.save(os.path.join(directory, "train_label.npy"), label)
  return open_cache(directory)


def open_cache(directory: str) -> dict:
  """The split as `mec_jax.data.cache.load_entry` opens it."""
  arrays = {
    name: np.load(os.path.join(directory, f"train_{name}.npy"), mmap_mode="r")
    for name in ("ids", "numeric", "label")
  }
  fields = NUM_NUMERIC + NUM_CATEGORICAL
  values = FieldValues(arrays.pop("numeric"), range(NUM_NUMERIC), fields)
  return {"ids": arrays["ids"], "values": values, "label": arrays["label"]}


def iterate(loader: BatchLoader, batches: int, put=None) -> tuple[float, float]:
  """``(samples per second, per CPU second)`` over ``batches`` batches of the loader's iterator
  (epochs chained as needed; CPU seconds of the whole process, the prefetch thread's included)."""
  done, epoch = 0, 0
  start, cpu = time.perf_counter(), time.process_time()
  while done < batches:
    for batch in loader.iterator({"epoch": epoch, "next_batch": 0}):
      if put is not None:
        batch = put(batch)
      done += 1
      if done == batches:
        break
    epoch += 1
  if put is not None:
    jax.block_until_ready(batch)
  samples = batches * loader.batch_size
  return samples / (time.perf_counter() - start), samples / (time.process_time() - cpu)


def gather_before(loader: BatchLoader, epoch: int, batch: int) -> dict:
  """The loader's gather before this benchmark (argsort + fancy index), for the same-process ratio."""
  rows, _ = loader.local_rows(epoch, batch)
  rows = rows[np.argsort(rows, kind="stable")]
  numeric = np.asarray(loader.arrays["values"].numeric[rows], np.float32)
  values = np.ones((len(rows), NUM_NUMERIC + NUM_CATEGORICAL), np.float32)
  values[:, :NUM_NUMERIC] = numeric  # as FieldValues built the dense rows
  return {
    "ids": np.asarray(loader.arrays["ids"][rows], np.int32),
    "values": values,
    "label": np.asarray(loader.arrays["label"][rows], np.float32),
  }


def gather_only(loader: BatchLoader, batches: int, gather=None) -> tuple[float, float]:
  """``(samples per second, per CPU second)`` of `BatchLoader.batch` (or ``gather``) called in
  this thread (no Grain). On a shared machine the CPU-second rate is the steadier figure."""
  gather = gather or loader.batch
  start, cpu = time.perf_counter(), time.process_time()
  for b in range(batches):
    gather(0, b % loader.num_batches)
  samples = batches * loader.batch_size
  return samples / (time.perf_counter() - start), samples / (time.process_time() - cpu)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, default=4_000_000)
  parser.add_argument("--batch", type=int, default=8192)
  parser.add_argument("--batches", type=int, default=400, help="timed batches per measurement")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory(prefix="loader_bench-") as directory:
    t0 = time.perf_counter()
    split = write_cache(directory, args.rows)
    print(f"cache: {args.rows:,} rows x 39 fields written in {time.perf_counter() - t0:.1f}s")
    loader = BatchLoader(split, args.batch, shuffle=True, seed=0, drop_remainder=True)
    t0 = time.perf_counter()
    loader.global_rows(0, 0)
    print(f"epoch permutation of {args.rows:,} rows: {time.perf_counter() - t0:.3f}s")
    gather_only(loader, loader.num_batches)  # page the cache in
    device = jax.devices()[0]
    rows = [
      (
        "before: argsort + fancy index (no thread)",
        gather_only(loader, args.batches, lambda e, b: gather_before(loader, e, b)),
      ),
      ("gather one batch (no thread)", gather_only(loader, args.batches)),
      ("BatchLoader iterator (prefetch thread)", iterate(loader, args.batches)),
      (
        f"iterator + device_put to {device.platform}",
        iterate(loader, args.batches, lambda b: jax.device_put(b, device)),
      ),
    ]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"| {'measurement':44s} | M samples/s | M samples/CPU-s | batches/s |")
    print(f"|{'-' * 46}|---|---|---|")
    for name, (rate, per_cpu) in rows:
      print(f"| {name:44s} | {rate / 1e6:.2f} | {per_cpu / 1e6:.2f} | {rate / args.batch:.0f} |")


if __name__ == "__main__":
  main()
