"""Writes a Criteo_x1-layout CSV set (train/valid/test.csv) with planted labels: no download.

The files have the header and column types `mec_jax/data/datasets/criteo_x1.py` reads
(``label,I1..I13,C1..C26``: integer counts with empty = missing, 8-hex-digit categorical hashes), so
``--config=configs/criteo.py --config.data.dir=DIR`` runs on them as on the real Criteo_x1.

The rows come from `mec_jax.data.synthetic`'s planted model (Zipf popularity per field, clustered
value embeddings, a logistic click model with pairwise interactions; see that module) with 26
categorical fields whose vocabularies are Criteo's per-field cardinalities scaled by ``--scale``
(fields of at most ``--keep`` values keep their size) and 13 heavy-tailed numeric fields. The large
hashed-id fields get a flatter Zipf exponent (``--tail_exponent``) than the small ones, so most of
their values are rare, as on Criteo. Deterministic by ``--seed``. Split 8:1:1 (``--rows`` is the
train split).

Run: ``python bench/criteo_layout.py --out DIR --rows 400000`` (~1 min and ~100 MB at 400k rows).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd

from mec_jax.data import synthetic

# Per-field cardinalities of Criteo (Kaggle display-ads, C1..C26), the shape being scaled down.
CRITEO_CARDINALITIES = (
  1460, 583, 10_131_227, 2_202_608, 305, 24, 12_517, 633, 3, 93_145, 5_683, 8_351_593, 3_194,
  27, 14_992, 5_461_306, 10, 5_652, 2_173, 4, 7_046_547, 18, 15, 286_181, 105, 142_572,
)  # fmt: skip
NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
SPLITS = ("train", "valid", "test")  # 8:1:1
_MULTIPLIER = 2_654_435_761  # odd, so id -> id * m + salt is a bijection mod 2**32: no collisions


def vocab_sizes(scale: float, keep: int) -> tuple[int, ...]:
  """Scaled cardinalities: ``V`` if ``V <= keep`` else ``max(keep, round(V * scale))``."""
  return tuple(v if v <= keep else max(keep, round(v * scale)) for v in CRITEO_CARDINALITIES)


def spec_of(
  rows: int,
  seed: int,
  scale: float = 1 / 40,
  keep: int = 1000,
  exponent: float = 1.1,
  tail_exponent: float = 0.9,
  large: int = 20_000,
) -> synthetic.SyntheticSpec:
  """The generator settings for ``rows`` train rows (valid and test add ``rows // 8`` each)."""
  sizes = vocab_sizes(scale, keep)
  return synthetic.SyntheticSpec(
    num_rows=rows + 2 * (rows // 8),
    vocab_sizes=sizes,
    num_numeric=len(NUMERIC),
    zipf_exponents=tuple(tail_exponent if v >= large else exponent for v in sizes),
    click_rate=0.25,  # Criteo's train click rate is ~0.256
    seed=seed,
  )


def hashes(values: np.ndarray, field: int, seed: int) -> np.ndarray:
  """Raw value ids ``[n]`` -> distinct 8-hex-digit strings per field (Criteo's look)."""
  salt = (field * 0x9E3779B9 + seed * 0x85EBCA6B) % 2**32
  mixed = (values.astype(np.uint64) * np.uint64(_MULTIPLIER) + np.uint64(salt)) % np.uint64(2**32)
  return np.char.mod("%08x", mixed)


def write(out: str, rows: int, seed: int = 0, **spec_kwargs) -> dict[str, int]:
  """Writes ``out/{train,valid,test}.csv``; returns the rows per split."""
  spec = spec_of(rows, seed, **spec_kwargs)
  frame, _, _ = synthetic.generate(spec)
  columns = {"label": frame["label"].astype(np.int64)}
  for name, source in zip(NUMERIC, spec.numeric_names, strict=True):
    columns[name] = frame[source].astype("Int64")  # NaN -> empty field
  for field, (name, source) in enumerate(zip(CATEGORICAL, spec.categorical_names, strict=True)):
    columns[name] = hashes(frame[source].to_numpy(), field, seed)
  table = pd.DataFrame(columns)
  os.makedirs(out, exist_ok=True)
  counts, start = {}, 0
  for split in SPLITS:
    count = rows if split == "train" else rows // 8
    table.iloc[start : start + count].to_csv(os.path.join(out, f"{split}.csv"), index=False)
    counts[split], start = count, start + count
  return counts


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="directory for train/valid/test.csv")
  parser.add_argument(
    "--rows", type=int, default=400_000, help="train rows (valid, test: 1/8 each)"
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--scale", type=float, default=1 / 40, help="cardinality scale")
  parser.add_argument("--keep", type=int, default=1000, help="fields this small keep their size")
  parser.add_argument("--exponent", type=float, default=1.1, help="Zipf exponent, small fields")
  parser.add_argument("--tail_exponent", type=float, default=0.9, help="Zipf exponent, >= 20k")
  args = parser.parse_args()
  counts = write(
    args.out,
    args.rows,
    args.seed,
    scale=args.scale,
    keep=args.keep,
    exponent=args.exponent,
    tail_exponent=args.tail_exponent,
  )
  sizes = vocab_sizes(args.scale, args.keep)
  print(f"wrote {counts} to {args.out}; vocabularies {sizes}")


if __name__ == "__main__":
  main()
