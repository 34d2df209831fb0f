"""The tail of a dataset config's id fields: how much of the data sits on ids seen <= k times.

Per categorical field: ids (table rows), the share of ids with <= k train occurrences, the share
of train rows and of test rows that look such an id up, and the test rows on the OOV id (values
never seen in train). A full table learns those rows from k examples or fewer; a hashed or
compressed table shares them with popular ids.

Run: ``python bench/synthetic_tail.py [--config=synthetic] [--k=3] [--cache_dir=DIR]``.
"""

from __future__ import annotations

import argparse
import importlib

import _common  # noqa: F401  (puts the checkout's configs package on sys.path)
import numpy as np

from mec_jax.data import load_dataset


def tail_rows(counts: np.ndarray, oov_id: int, train_ids, test_ids, k: int) -> dict:
  """Shares of ids / train rows / test rows on ids with <= k train occurrences (OOV excluded)."""
  rare = counts <= k
  rare[oov_id] = False
  return {
    "ids": len(counts),
    "rare_ids": float(rare.mean()),
    "train_rows": float(rare[train_ids].mean()),
    "test_rows": float(rare[test_ids].mean()),
    "test_oov": float(np.mean(test_ids == oov_id)),
  }


def main(config_name: str, k: int, cache_dir: str) -> None:
  config = importlib.import_module(f"mec_jax.configs.{config_name}").get_config()
  dataset = load_dataset(config.data, cache_dir)
  print(f"| field | ids | ids seen <= {k}x | train rows on them | test rows on them | test OOV |")
  print("|---|---|---|---|---|---|")
  any_train = any_test = any_oov = 0
  for f, spec in enumerate(dataset.feature_map.fields):
    if not spec.is_categorical:
      continue
    train = dataset.splits["train"]["ids"][:, f]
    test = dataset.splits["test"]["ids"][:, f]
    t = tail_rows(spec.counts, spec.oov_id, train, test, k)
    rare = spec.counts <= k
    rare[spec.oov_id] = False
    any_train = any_train | rare[train]
    any_test = any_test | rare[test]
    any_oov = any_oov | (test == spec.oov_id)
    print(
      f"| {spec.name} | {t['ids']:,} | {t['rare_ids']:.1%} | {t['train_rows']:.1%} | "
      f"{t['test_rows']:.1%} | {t['test_oov']:.1%} |"
    )
  print(
    f"| any field | | | {np.mean(any_train):.1%} | {np.mean(any_test):.1%} | "
    f"{np.mean(any_oov):.1%} |"
  )


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="synthetic", help="built-in config name")
  parser.add_argument("--k", type=int, default=3, help="rare: at most this many train occurrences")
  parser.add_argument("--cache_dir", default="/tmp/mec_tail_cache", help="encoded-array cache")
  args = parser.parse_args()
  main(args.config, args.k, args.cache_dir)
