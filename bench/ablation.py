"""Stage-B ablation at the AUC level: every variant, two compression settings, several seeds.

The cells are those of the sweep file ``configs/sweeps/ablation.py`` (one per setting x variant,
`ablation.cell`), run by `mec_jax.experiments.runner` on each dataset: stage A once per
(dataset, seed) in ``<out>/<dataset>/stage_a/seed<seed>/``, shared by every cell; per cell
``<out>/<dataset>/cells/<cell>/seed<seed>/`` stage B and the swap-in (stage-A weights with the
compressed tables, no training) and, for the variants in ``--finetune_variants``, the paper's
stage C (a fresh backbone on the frozen codes, ``finetune.init_from_pretrain=False``). A finished
cell is not run again, so the grid resumes where it was killed; a swap-in-only cell later asked
for stage C keeps its stage B (the runner's stage reuse) and adds stage C. ``<out>/results.md``
is rewritten after every cell.

Printed: test AUC mean ± std over the finished seeds per (dataset, setting, variant) for the
swap-in (and stage C where run), the paired difference to `kmeans` and `mec` (``--paired_to``;
per seed, same stage A), and per compressed field (``report.json`` ``compressed_fields``) the
code-usage entropy / ln K, the share of rare values (train count <= 3) with a code tuple of their
own, distinct tuples among the rare values per rare value, the weighted table-space error and the
epoch kept.

Run: ``JAX_PLATFORMS=cpu nice python bench/ablation.py [--datasets synthetic,frappe,movielens]
[--seeds 2024,2025,2026] [--settings m2k256,m4k64] [--variants mec,...]
[--finetune_variants mec,kmeans] [--out /tmp/mec_ablation]``; ``--report`` only prints the table
of what has finished. A variant may name a quantizer encoder, ``mec@block`` or ``mec@dense``
(default: ``quantize.encoder``), and override other keys after colons: ``mec:selection=error``
(a ``quantize`` key), ``mec:finetune.codebook_learning_rate=1e-9`` (any section). Seeds set
``train.seed``, ``quantize.seed`` and ``compress.hash_seed`` alike (the runner's rule).
"""

from __future__ import annotations

import argparse
import ast
import os
import time
from pathlib import Path

import _common  # noqa: F401  (puts the checkout's `configs` on sys.path)
import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from configs.sweeps import ablation
from mec_jax.experiments import runner, summary

FIELD_STATS = {  # column title -> (compressed_fields key, format)
  "entropy / ln K": ("code_usage_entropy", "{:.3f}"),
  "rare distinct": ("rare_distinct_fraction", "{:.3f}"),
  "rare tuples": ("rare_tuple_fraction", "{:.3f}"),
  "weighted err": ("recon_error_weighted", "{:.4g}"),
  "kept epoch": ("best_epoch", "{:.1f}"),
}


def _value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def variant_cell(setting: str, variant: str) -> dict:
  """The sweep overrides of ``variant`` (``mec``, ``mec@block``, ``mec:selection=error``, ...)."""
  name, *items = variant.split(":")
  name, _, encoder = name.partition("@")
  overrides = {"quantize.encoder": encoder} if encoder else {}
  for item in items:
    key, value = item.split("=", 1)
    overrides[key if "." in key else f"quantize.{key}"] = _value(value)
  return ablation.cell(setting, name, **overrides)


def run_dataset(dataset: str, seeds: list[int], args) -> None:
  """Every requested cell of ``dataset``, seeds outermost (a partial grid has every cell)."""
  config = ablation.config_for(dataset)
  root = str(Path(args.out) / dataset)
  finetune = set(args.finetune_variants.split(",")) - {""}
  for seed in seeds:
    start = time.time()
    stage_a = runner.run_stage_a(config, seed, root)
    print(f"{dataset} seed {seed}: stage A {time.time() - start:.0f}s", flush=True)
    for setting in args.settings.split(","):
      for variant in args.variants.split(","):
        start = time.time()
        overrides = variant_cell(setting, variant)
        cold = variant in finetune
        record = runner.run_cell(config, seed, overrides, root, stage_a, finetune=cold)
        if record is not None and cold and not record.get("finetune"):  # add stage C
          os.remove(Path(root, "cells", runner.cell_name(overrides), f"seed{seed}", "cell.json"))
          record = runner.run_cell(config, seed, overrides, root, stage_a, finetune=True)
        if record is None:
          print(f"  {setting} {variant}: being run by another process", flush=True)
          continue
        if "report" not in record:  # failed (retried by the next run) or infeasible
          print(f"  {setting} {variant}: {summary.one_line(record)}", flush=True)
          continue
        report = record["report"]
        stage_c = report.get("compressed_finetune")
        print(
          f"  {setting} {variant}: swap test AUC {report['compressed_swap']['test_auc']:.4f}"
          + (f", stage C {stage_c['test_auc']:.4f}" if stage_c else "")
          + f" ({time.time() - start:.0f}s, load {os.getloadavg()[0]:.1f})",
          flush=True,
        )
        write_results(args)


def collect(args) -> tuple[dict, dict]:
  """``({(dataset, setting, variant): {seed: report.json}}, {dataset: {seed: full metrics}})``
  of the finished cells."""
  cells, full = {}, {}
  for dataset in args.datasets.split(","):
    root = str(Path(args.out) / dataset)
    by_name = {}
    for record in runner.records_on_disk(root):
      if "report" in record:
        by_name.setdefault(record["cell"], {})[record["seed"]] = record["report"]
    for setting in args.settings.split(","):
      for variant in args.variants.split(","):
        runs = by_name.get(runner.cell_name(variant_cell(setting, variant)))
        if runs:
          cells[(dataset, setting, variant)] = runs
          full.setdefault(dataset, {}).update({s: r["full"] for s, r in runs.items()})
  return cells, full


def mean_std(values: list[float]) -> str:
  if not values:
    return "—"
  if len(values) == 1:
    return f"{values[0]:.4f} (1 seed)"
  return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def paired(runs: dict, reference: dict, metric, reference_metric=None) -> str:
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


def swap_auc(report: dict) -> float:
  return report["compressed_swap"]["test_auc"]


def cold_auc(report: dict) -> float | None:
  stage_c = report.get("compressed_finetune")
  return stage_c["test_auc"] if stage_c else None


def per_field(runs: list[dict], key: str, fmt: str) -> str:
  """``field mean; ...``: the mean over seeds of ``compressed_fields[field][key]``."""
  out = []
  for name in runs[0]["compressed_fields"]:
    vals = [r["compressed_fields"][name].get(key) for r in runs]
    vals = [v for v in vals if v is not None]
    out.append(f"{name} {fmt.format(np.mean(vals))}" if vals else f"{name} —")
  return "; ".join(out)


def results_markdown(args) -> str:
  cells, full = collect(args)
  baselines = args.paired_to.split(",")
  first = baselines[0]
  lines = [
    "| dataset | setting | variant | seeds | swap-in test AUC "
    + "".join(f"| swap-in Δ vs {b} (paired) " for b in baselines)
    + f"| stage C (cold) test AUC | stage C Δ vs {first} (paired) | stage C − swap-in (paired) "
    "| full test AUC " + "".join(f"| {title} per field " for title in FIELD_STATS) + "|",
    "|---" * (9 + len(baselines) + len(FIELD_STATS)) + "|",
  ]
  for (dataset, setting, variant), by_seed in cells.items():
    runs = list(by_seed.values())
    cold = [cold_auc(r) for r in runs if cold_auc(r) is not None]
    full_aucs = [m["test_auc"] for m in full[dataset].values()]

    def versus(baseline, metric, variant=variant, by_seed=by_seed, cell=(dataset, setting)):
      if variant == baseline:
        return "—"
      return paired(by_seed, cells.get((*cell, baseline), {}), metric)

    lines.append(
      f"| {dataset} | {setting} | {variant} | {len(runs)} | {mean_std([swap_auc(r) for r in runs])} "
      + "".join(f"| {versus(b, swap_auc)} " for b in baselines)
      + f"| {mean_std(cold)} | {versus(first, cold_auc)} "
      f"| {paired(by_seed, by_seed, cold_auc, swap_auc)} | {mean_std(full_aucs)} "
      + "".join(f"| {per_field(runs, key, fmt)} " for key, fmt in FIELD_STATS.values())
      + "|"
    )
  return "\n".join(lines)


def write_results(args) -> None:
  Path(args.out).mkdir(parents=True, exist_ok=True)
  (Path(args.out) / "results.md").write_text(results_markdown(args) + "\n")


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--datasets", default=",".join(ablation.DATASETS), help="configs/<name>.py")
  parser.add_argument("--seeds", default=",".join(map(str, ablation.SEEDS)))
  parser.add_argument("--settings", default=",".join(ablation.SETTINGS))
  parser.add_argument("--variants", default=",".join(ablation.VARIANTS))
  parser.add_argument("--finetune_variants", default="", help="variants that also run stage C")
  parser.add_argument("--out", default="/tmp/mec_ablation")
  parser.add_argument(
    "--paired_to", default="kmeans,mec", help="variants the paired Δ columns compare against"
  )
  parser.add_argument("--report", action="store_true", help="only print what has finished")
  args = parser.parse_args(argv)
  for name, allowed in (("settings", ablation.SETTINGS), ("variants", ablation.VARIANTS)):
    unknown = {v.split(":")[0].split("@")[0] for v in getattr(args, name).split(",")}
    if unknown - set(allowed):
      parser.error(
        f"--{name}: unknown {sorted(unknown - set(allowed))}; expected some of {list(allowed)}"
      )
  from absl import logging

  logging.set_verbosity(logging.WARNING)
  if not args.report:
    seeds = [int(s) for s in args.seeds.split(",")]
    for dataset in args.datasets.split(","):
      run_dataset(dataset, seeds, args)
  print(results_markdown(args))


if __name__ == "__main__":
  main()
