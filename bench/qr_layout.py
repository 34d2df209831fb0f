r"""How much train traffic shares a table row with a more popular id: hash vs the two QR layouts.

Usage: ``python bench/qr_layout.py CACHE_DIR [RATIO] [MIN_VOCAB]`` with ``CACHE_DIR`` an encoded
dataset cache (``<workdir>/cache/<key>``, holding ``counts.npz`` and ``feature_map.json``).

For every field of at least ``MIN_VOCAB`` ids it prints, at the ``RATIO`` byte budget (hash:
``V / r`` buckets; QR: the collisions `mec_jax.methods.budget.plan_qr` picks for the fields
together), the share of train occurrences whose id is *not* the most popular id of its large row
(hash: its bucket). That traffic can only be told apart from its row's leader through the small
QR table (hash: not at all). ``top-c`` is the traffic of the ``c`` most popular ids, which the
``quotient`` layout (large row ``v // c``) puts in one row.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from mec_jax.layers.hashed import hash_ids
from mec_jax.layers.qr import qr_index
from mec_jax.methods.budget import plan_qr


def shadowed(counts: np.ndarray, rows: np.ndarray) -> float:
  """Share of ``counts`` on ids that are not the most frequent id of their row."""
  leader = np.zeros(rows.max() + 1)
  np.maximum.at(leader, rows, counts)
  return 1.0 - leader.sum() / counts.sum()


def main(cache: str, ratio: float = 25.0, min_vocab: int = 1000) -> None:
  fields = json.load(open(os.path.join(cache, "feature_map.json")))["fields"]
  counts = np.load(os.path.join(cache, "counts.npz"))
  fields = [f for f in fields if f["kind"] == "categorical" and f["vocab_size"] >= min_vocab]
  vocabs = [f["vocab_size"] for f in fields]
  collisions = plan_qr(vocabs, int(sum(vocabs) / ratio))
  print(f"{cache} at {ratio:g}x: share of train traffic not the leader of its row")
  print("| field | V | c | top-c traffic | hash | qr quotient | qr remainder |")
  print("|---|---|---|---|---|---|---|")
  for field, vocab, c in zip(fields, vocabs, collisions, strict=True):
    n = counts[field["name"]].astype(np.float64)[:vocab]
    ids = np.arange(vocab)
    top = np.sort(n)[::-1][:c].sum() / n.sum()
    hashed = shadowed(n, np.asarray(hash_ids(ids, max(1, int(vocab / ratio)))))
    quotient = shadowed(n, qr_index(ids, vocab, c, "quotient")[0])
    remainder = shadowed(n, qr_index(ids, vocab, c, "remainder")[0])
    print(
      f"| {field['name']} | {vocab} | {c} | {top:.3f} | {hashed:.3f} | {quotient:.3f} "
      f"| {remainder:.3f} |"
    )


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("cache", help="an encoded dataset cache (counts.npz, feature_map.json)")
  parser.add_argument("ratio", nargs="?", type=float, default=25.0, help="byte budget (x)")
  parser.add_argument("min_vocab", nargs="?", type=int, default=1000, help="smallest field")
  args = parser.parse_args()
  main(args.cache, args.ratio, args.min_vocab)
