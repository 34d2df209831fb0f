"""Deterministic CSV/TSV fixtures in the real formats (shared by the reader and cache tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CRITEO_COLUMNS = ["label", *[f"I{i}" for i in range(1, 14)], *[f"C{i}" for i in range(1, 27)]]


def criteo_row(rng, label, i_missing=False, c_value=None) -> list[str]:
  ints = ["" if i_missing and j % 3 == 0 else str(int(rng.integers(-2, 50))) for j in range(13)]
  cats = [c_value or f"{rng.integers(0, 4):08x}" if j % 5 else "" for j in range(26)]
  return [str(label), *ints, *cats]


def write_criteo_x1(directory: Path, rows=None, seed: int = 0) -> dict[str, int]:
  """train/valid/test.csv with a header; test row 0 holds a C-value never seen in train."""
  rng = np.random.default_rng(seed)
  rows = rows or {"train": 30, "valid": 6, "test": 5}
  for split, n in rows.items():
    lines = [",".join(CRITEO_COLUMNS)]
    for r in range(n):
      value = "cafebabe" if split == "test" and r == 0 else None
      lines.append(",".join(criteo_row(rng, r % 2, i_missing=r % 4 == 0, c_value=value)))
    (directory / f"{split}.csv").write_text("\n".join(lines) + "\n")
  return rows


def write_avazu_x1(directory: Path, seed: int = 1) -> None:
  rng = np.random.default_rng(seed)
  header = ",".join(["label", *[f"feat_{i}" for i in range(1, 23)]])
  for split, n in {"train": 20, "valid": 4, "test": 4}.items():
    body = [",".join([str(r % 2), *[str(rng.integers(0, 5)) for _ in range(22)]]) for r in range(n)]
    (directory / f"{split}.csv").write_text("\n".join([header, *body]) + "\n")


def write_criteo_kaggle(directory: Path, rows: int = 50, seed: int = 2) -> Path:
  rng = np.random.default_rng(seed)
  lines = ["\t".join(criteo_row(rng, int(r % 3 == 0), i_missing=r % 2 == 0)) for r in range(rows)]
  path = directory / "train.txt"
  path.write_text("\n".join(lines) + "\n")
  return path
