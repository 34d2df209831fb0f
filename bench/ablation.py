"""Stage-B ablation at the AUC level: every variant, two compression settings, several seeds.

For each (dataset, seed) stage A runs once (``<out>/<dataset>_s<seed>/``, reused by the
pipeline's own stage reuse: `pipeline.run_pretrain` restores a finished run). Each cell
(setting x variant) then has its own work directory ``.../<setting>_<variant>/`` whose stage-A
tables point at the shared ones; in it `pipeline.run_quantize` writes the compressed fields,
`pipeline.run_swap` evaluates stage A's weights with them (no training) and, for the variants in
``--finetune_variants``, `pipeline.run_finetune` trains the paper's stage C: a fresh backbone on
the frozen codes (``finetune.init_from_pretrain=False``). Every artifact is reused on rerun, so
the grid resumes where it was killed; ``<out>/results.md`` is rewritten after every cell.

Printed: test AUC mean ± std over the finished seeds per (dataset, setting, variant) for the
swap-in (and stage C where run), the paired difference to `kmeans` and `mec` (``--paired_to``;
per seed, same stage A), and per compressed field the code-usage entropy / ln K, the share of rare
values (train count <= 3) with a code tuple of their own, distinct tuples among the rare values
per rare value (how far they are merged), the weighted table-space error
and the epoch kept. ``--cold_full`` also trains, per (dataset, seed), a fresh backbone on the
frozen *uncompressed* stage-A tables (`run_cold_full`): the cold stage C's ceiling.

Run: ``JAX_PLATFORMS=cpu nice python bench/ablation.py [--datasets synthetic,frappe,movielens]
[--seeds 0,1,2] [--settings m2k256,m4k64] [--variants mec,...] [--finetune_variants mec,kmeans]
[--out /tmp/mec_ablation]``; ``--report`` only prints the table of what has finished. A variant
may name a quantizer encoder, ``mec@block`` or ``mec@dense`` (default: ``quantize.encoder``), and
override other keys after colons: ``mec:selection=error`` (``quantize``),
``mec:finetune.codebook_learning_rate=1e-9`` (any section).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from pathlib import Path

import _common
import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from mec_jax import model_factory, pipeline, report
from mec_jax.data import load_dataset
from mec_jax.train import loop
from mec_jax.workdir import Workdir

DATA_ROOT = _common.DATA_ROOT
DATA_DIRS = {"frappe": "frappe", "movielens": "movielens_100k", "synthetic": None}
SETTINGS = {"m2k256": (2, 256), "m4k64": (4, 64)}
VARIANTS = ("mec", "no_pwr", "no_balance", "no_contrastive", "kmeans", "reference")
FIELD_STATS = (
  "code_usage_entropy",
  "rare_distinct_fraction",
  "rare_tuple_fraction",
  "distinct_code_fraction",
  "recon_error_weighted",
  "kmeans_error",
  "shipped_error",
  "best_epoch",
  "epochs_run",
  "stop_reason",
)


def make_config(dataset: str, seed: int):
  config = importlib.import_module(f"configs.{dataset}").get_config()
  if DATA_DIRS[dataset]:
    config.data.dir = str((DATA_ROOT / DATA_DIRS[dataset]).resolve())
  config.train.seed = 2024 + seed
  config.quantize.seed = seed
  config.train.progress = False
  return config


def cell_config(base, setting: str, variant: str):
  """``variant`` is a stage-B variant, optionally ``@encoder`` (``mec@block``) and ``:key=value``
  overrides (``mec:selection=error``: a ``quantize`` key; ``mec:finetune.learning_rate=0.01``: any
  section's), typed like the key's default."""
  config = base.copy_and_resolve_references()
  config.quantize.num_subspaces, config.quantize.codebook_size = SETTINGS[setting]
  variant, *overrides = variant.split(":")
  config.quantize.variant, _, encoder = variant.partition("@")
  for item in overrides:
    key, value = item.split("=", 1)
    section, _, key = key.rpartition(".")
    section = config[section or "quantize"]
    section[key] = type(section[key])(value)
  if encoder:
    config.quantize.encoder = encoder
  config.finetune.init_from_pretrain = False  # the paper's stage C: a fresh backbone
  return config


def run_cell(base, dataset, pretrained, stage_a: Workdir, root: Path, cell: str, args):
  setting, variant = cell.split("_", 1)
  summary_path = root / cell / "cell.json"
  finetune = variant in args.finetune_variants.split(",")
  if summary_path.exists():
    summary = json.loads(summary_path.read_text())
    if not finetune or summary.get("finetune"):
      return summary
  config = cell_config(base, setting, variant)
  wd = Workdir(str(root / cell))
  wd.tables = stage_a.tables  # stage A is shared by every cell of this (dataset, seed)
  start = time.time()
  compressed = pipeline.run_quantize(config, dataset, wd)
  quantize_s = time.time() - start
  swap = pipeline.run_swap(config, dataset, wd, pretrained, compressed)
  summary = {
    "swap": swap,
    "quantize_seconds": quantize_s,
    "load": os.getloadavg()[0],
    "fields": {
      name: {k: v for k, v in fields.items() if k in FIELD_STATS}
      for name, fields in report.compressed_fields_section(compressed).items()
    },
  }
  if finetune:
    _, result = pipeline.run_finetune(config, dataset, wd, pretrained, compressed)
    summary["finetune"] = report.metrics_of(result)
  report.write_json_atomic(str(summary_path), summary)
  return summary


def run_cold_full(base, dataset, pretrained, root: Path) -> dict:
  """The cold stage C's ceiling: a fresh backbone on the *uncompressed* stage-A tables.

  Same fresh init (``train.seed + 1``) and loop as `pipeline.run_finetune`'s cold start, but the
  fields stage B would compress keep their full stage-A rows, frozen; the small fields and every
  other weight train from scratch. Its gap to stage A is what a fresh backbone costs by itself.
  """
  path = root / "cold_full" / "summary.json"
  if path.exists():
    return json.loads(path.read_text())
  model = model_factory.full_model(base.pretrain.model, dataset, base, base.train.seed + 1)
  frozen = {}
  for index in dataset.feature_map.fields_to_compress(base.quantize.min_vocab):
    source, target = pretrained.embedding.tables[index], model.embedding.tables[index]
    target.embedding[...] = source.embedding[...]
    if target.bias is not None:
      target.bias[...] = source.bias[...]
    frozen[f"embedding/tables/{index}/"] = 0.0  # `optimizer.param_labels` path keys; 0 freezes
  result = loop.fit(
    model,
    dataset.splits,
    train_config=loop.TrainConfig.from_config(base),
    workdir=str(root / "cold_full"),
    name="cold_full",
    lr_overrides=frozen,
  )
  summary = report.metrics_of(result)
  report.write_json_atomic(str(path), summary)
  return summary


def run_dataset_seed(dataset_name: str, seed: int, args) -> None:
  base = make_config(dataset_name, seed)
  root = Path(args.out) / f"{dataset_name}_s{seed}"
  stage_a = Workdir(str(root))
  dataset = load_dataset(base.data, str(root / "cache"))
  start = time.time()
  pretrained, full = pipeline.run_pretrain(base, dataset, stage_a)
  report.write_json_atomic(str(root / "full.json"), report.metrics_of(full))
  print(f"{dataset_name} seed {seed}: stage A {time.time() - start:.0f}s", flush=True)
  if args.cold_full:
    cold = run_cold_full(base, dataset, pretrained, root)
    print(
      f"  fresh backbone on the frozen full tables: test AUC {cold['test_auc']:.4f}", flush=True
    )
  for setting in args.settings.split(","):
    for variant in args.variants.split(","):
      start = time.time()
      s = run_cell(base, dataset, pretrained, stage_a, root, f"{setting}_{variant}", args)
      print(
        f"  {setting} {variant}: swap test AUC {s['swap']['test_auc']:.4f}"
        + (f", stage C {s['finetune']['test_auc']:.4f}" if s.get("finetune") else "")
        + f" ({time.time() - start:.0f}s, load {os.getloadavg()[0]:.1f})",
        flush=True,
      )
      write_results(args)


def _mean_std(values: list[float]) -> str:
  if not values:
    return "—"
  if len(values) == 1:
    return f"{values[0]:.4f} (1 seed)"
  return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def collect(args) -> dict:
  """``{(dataset, setting, variant): {seed: cell summary}}`` of finished cells and full AUCs."""
  cells, full, cold_full = {}, {}, {}
  for dataset in args.datasets.split(","):
    for seed in args.seeds.split(","):
      root = Path(args.out) / f"{dataset}_s{seed}"
      if (root / "full.json").exists():
        full.setdefault(dataset, []).append(json.loads((root / "full.json").read_text()))
        if (root / "cold_full" / "summary.json").exists():
          cold = json.loads((root / "cold_full" / "summary.json").read_text())
          cold_full.setdefault(dataset, []).append(
            (full[dataset][-1]["test_auc"], cold["test_auc"])
          )
      for setting in args.settings.split(","):
        for variant in args.variants.split(","):
          path = root / f"{setting}_{variant}" / "cell.json"
          if path.exists():
            cell = cells.setdefault((dataset, setting, variant), {})
            cell[seed] = json.loads(path.read_text())
  return {"cells": cells, "full": full, "cold_full": cold_full}


def _paired(runs: dict, reference: dict, metric, reference_metric=None) -> str:
  """Mean ± std over the seeds both finished of ``metric(run) - reference_metric(reference
  run)`` (``reference_metric`` defaults to ``metric``).

  Every cell of a seed shares its stage A, so the per-seed difference removes stage A's spread
  (which dominates the across-seed std of the AUCs themselves).
  """
  diffs = []
  for seed, run in runs.items():
    b = (reference_metric or metric)(reference[seed]) if seed in reference else None
    a = metric(run)
    if a is not None and b is not None:
      diffs.append(a - b)
  if not diffs:
    return "—"
  return f"{np.mean(diffs):+.4f} ± {np.std(diffs):.4f} ({len(diffs)})"


def _swap_auc(run):
  return run["swap"]["test_auc"]


def _cold_auc(run):
  return run["finetune"]["test_auc"] if run.get("finetune") else None


def results_markdown(args) -> str:
  data = collect(args)
  baselines = args.paired_to.split(",")
  first = baselines[0]
  lines = [
    "| dataset | setting | variant | seeds | swap-in test AUC "
    + "".join(f"| swap-in Δ vs {b} (paired) " for b in baselines)
    + f"| stage C (cold) test AUC | stage C Δ vs {first} (paired) | stage C − swap-in (paired) "
    "| full test AUC | entropy / ln K per field | rare distinct per field "
    "| rare tuples per field | weighted err per field | kept epoch per field |",
    "|---" * (14 + len(baselines)) + "|",
  ]
  for (dataset, setting, variant), by_seed in data["cells"].items():
    runs = list(by_seed.values())
    full = [r["test_auc"] for r in data["full"].get(dataset, [])]
    swap = [_swap_auc(r) for r in runs]
    cold = [_cold_auc(r) for r in runs if r.get("finetune")]
    fields = runs[0]["fields"]

    def per_field(key, fmt, fields=fields, runs=runs):
      out = []
      for name in fields:
        vals = [r["fields"][name].get(key) for r in runs if r["fields"][name].get(key) is not None]
        out.append(f"{name} {fmt.format(np.mean(vals))}" if vals else f"{name} —")
      return "; ".join(out)

    def versus(baseline, metric, variant=variant, by_seed=by_seed, cell=(dataset, setting)):
      if variant == baseline:
        return "—"
      return _paired(by_seed, data["cells"].get((*cell, baseline), {}), metric)

    lines.append(
      f"| {dataset} | {setting} | {variant} | {len(runs)} | {_mean_std(swap)} "
      + "".join(f"| {versus(b, _swap_auc)} " for b in baselines)
      + f"| {_mean_std(cold)} | {versus(first, _cold_auc)} "
      f"| {_paired(by_seed, by_seed, _cold_auc, _swap_auc)} "
      f"| {_mean_std(full)} | {per_field('code_usage_entropy', '{:.3f}')} "
      f"| {per_field('rare_distinct_fraction', '{:.3f}')} "
      f"| {per_field('rare_tuple_fraction', '{:.3f}')} "
      f"| {per_field('recon_error_weighted', '{:.4g}')} | {per_field('best_epoch', '{:.1f}')} |"
    )
  if data["cold_full"]:
    lines += [
      "",
      "| dataset | seeds | full test AUC | fresh backbone, frozen full tables | paired Δ |",
      "|---|---|---|---|---|",
    ]
    for dataset, pairs in data["cold_full"].items():
      full, cold = np.array(pairs).T
      lines.append(
        f"| {dataset} | {len(pairs)} | {_mean_std(list(full))} | {_mean_std(list(cold))} "
        f"| {np.mean(cold - full):+.4f} ± {np.std(cold - full):.4f} |"
      )
  return "\n".join(lines)


def write_results(args) -> None:
  Path(args.out).mkdir(parents=True, exist_ok=True)
  (Path(args.out) / "results.md").write_text(results_markdown(args) + "\n")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--datasets", default=",".join(DATA_DIRS))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--settings", default=",".join(SETTINGS))
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--finetune_variants", default="", help="variants that also run stage C")
  parser.add_argument("--out", default="/tmp/mec_ablation")
  parser.add_argument(
    "--cold_full", action="store_true", help="also a fresh backbone on the frozen full tables"
  )
  parser.add_argument(
    "--paired_to", default="kmeans,mec", help="variants the paired Δ columns compare against"
  )
  parser.add_argument("--report", action="store_true", help="only print what has finished")
  args = parser.parse_args()
  for name, allowed in (("datasets", DATA_DIRS), ("settings", SETTINGS), ("variants", VARIANTS)):
    given = getattr(args, name).split(",")
    unknown = {v.split(":")[0].split("@")[0] for v in given} - set(allowed)
    if unknown:
      parser.error(f"--{name}: unknown {sorted(unknown)}; expected some of {list(allowed)}")
  from absl import logging

  logging.set_verbosity(logging.WARNING)
  if not args.report:
    for seed in args.seeds.split(","):
      for dataset in args.datasets.split(","):
        run_dataset_seed(dataset, int(seed), args)
  print(results_markdown(args))


if __name__ == "__main__":
  main()
