"""What fingerprinting a dataset's input files costs (`mec_jax.data.fingerprint`), per file size.

Every run fingerprints the files under ``data.dir`` twice (the stage records and the cache key),
so it must stay small next to loading a cached 45M-row dataset. Writes one file per size into a
temp directory (random bytes), then times `input_fingerprint` with the file's pages evicted from
the page cache (``posix_fadvise(DONTNEED)``: a cold read from disk) and warm.

  python bench/fingerprint.py --sizes_mb=1,100,2000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from ml_collections import ConfigDict

from mec_jax.data import fingerprint


def _write(path: str, megabytes: int) -> None:
  block = np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
  with open(path, "wb") as fh:
    for _ in range(megabytes):
      fh.write(block)


def _evict(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
  finally:
    os.close(fd)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes_mb", default="1,100,2000")
  parser.add_argument("--dir", default=None, help="where to write the files (default: a temp dir)")
  args = parser.parse_args()
  print("| file | cold (s) | warm (s) | bytes read |")
  print("|---|---|---|---|")
  with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
    for megabytes in (int(s) for s in args.sizes_mb.split(",")):
      path = os.path.join(tmp, "train.csv")
      _write(path, megabytes)
      config = ConfigDict({"name": "criteo_kaggle", "dir": path})
      _evict(path)
      start = time.perf_counter()
      fingerprint.input_fingerprint(config)
      cold = time.perf_counter() - start
      start = time.perf_counter()
      fingerprint.input_fingerprint(config)
      warm = time.perf_counter() - start
      read = min(megabytes << 20, fingerprint.SAMPLE_BLOCKS * fingerprint.BLOCK_BYTES)
      print(f"| {megabytes:,} MB | {cold:.4f} | {warm:.4f} | {read / 2**20:.1f} MiB |")
      os.remove(path)


if __name__ == "__main__":
  main()
