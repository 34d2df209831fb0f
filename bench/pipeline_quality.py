"""Full vs compressed test AUC of the whole pipeline on Frappe and MovieLens-100K, per backbone.

For every (dataset, backbone) pair this runs `mec_jax.pipeline.run` (stage A pretrain -> B
quantize -> C finetune + swap-in -> report) with ``pretrain.model = model.name = backbone``, so
stage C warm-starts from stage A's backbone, and prints one markdown row per pair: full test AUC,
swap-in and finetuned test AUC, which of the two the pipeline kept (by validation score), the AUC
change of the kept model against the full one, the bit-packed memory ratio over all tables and
over the compressed fields alone, and the wall time per stage.

Each pair runs in ``<out>/<dataset>_<backbone>``. A finished workdir whose stored config equals
the current one is reused as is; one whose config differs only in ``finetune`` keeps stages A/B
and reruns stage C; any other difference reruns the pair from scratch.

All 8 pairs take about 10 minutes on 2 CPU cores (jit compilations are shared across pairs, as
they run in one process). Datasets are read from
``<repo>/../shared/data/{frappe,movielens_100k}``; a missing one is skipped with a message.

Run: ``JAX_PLATFORMS=cpu python bench/pipeline_quality.py [--datasets frappe,movielens]
[--models deepfm,dcnv2,pnn,gdcn] [--epochs 10] [--out /tmp/mec_bench_quality]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import time
from pathlib import Path

import _common

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from mec_jax import pipeline
from mec_jax.models import registry

DATA_ROOT = _common.DATA_ROOT
DATASETS = {"frappe": "frappe", "movielens": "movielens_100k"}  # config name -> data folder
MODELS = ("deepfm", "dcnv2", "pnn", "gdcn")
STAGES = ("pretrain", "quantize", "swap", "finetune")


def make_config(dataset: str, backbone: str, epochs: int | None):
  """The dataset's config with stage A and C on ``backbone`` and an absolute data path."""
  config = importlib.import_module(f"configs.{dataset}").get_config()
  config.data.dir = str((DATA_ROOT / DATASETS[dataset]).resolve())
  config.model.name = backbone
  config.pretrain.model = backbone
  config.train.progress = False
  if epochs:
    config.train.epochs = epochs
  return config


def _normalized(config_dict: dict) -> dict:
  return json.loads(json.dumps(config_dict))  # tuples -> lists, as config.json stores them


def prepare_workdir(workdir: Path, config) -> str:
  """Decides what a rerun must redo; returns "reuse", "finetune" or "all"."""
  stored_path = workdir / "config.json"
  if not stored_path.exists():
    return "all"
  stored = json.loads(stored_path.read_text())
  current = _normalized(config.to_dict())
  changed = {k for k in set(stored) | set(current) if stored.get(k) != current.get(k)}
  if not changed:
    return "reuse" if (workdir / "report.json").exists() else "all"
  if changed == {"finetune"}:
    shutil.rmtree(workdir / "finetune", ignore_errors=True)
    _drop_timing(workdir, "finetune")
    return "finetune"
  print(f"  {workdir.name}: config sections {sorted(changed)} changed; starting over")
  shutil.rmtree(workdir)
  return "all"


def _drop_timing(workdir: Path, stage: str) -> None:
  # The pipeline adds up a stage's seconds over resumed runs; a redone stage starts from zero.
  path = workdir / "timings.json"
  if path.exists():
    timings = json.loads(path.read_text())
    timings.pop(stage, None)
    path.write_text(json.dumps(timings))


def run_pair(dataset: str, backbone: str, args) -> dict:
  config = make_config(dataset, backbone, args.epochs)
  workdir = Path(args.out) / f"{dataset}_{backbone}"
  action = prepare_workdir(workdir, config)
  start = time.time()
  if action == "reuse":
    report = json.loads((workdir / "report.json").read_text())
  else:
    report = pipeline.run(config, str(workdir))
  kept = report.get("compressed", {})
  print(
    f"  {dataset}/{backbone}: {action}, {time.time() - start:.0f}s this run; test AUC full "
    f"{_auc(report, 'full')}, kept {_auc(report, 'compressed')} ({kept.get('source', '-')})",
    flush=True,
  )
  return report


def _auc(report: dict, key: str) -> str:
  section = report.get(key)
  return f"{section['test_auc']:.4f}" if section else "—"


def table(rows: list[tuple[str, str, dict]]) -> str:
  header = (
    "| dataset | backbone | full AUC | swap-in AUC | finetuned AUC | kept | ΔAUC (kept − full) "
    "| ratio_packed (all tables) | ratio_packed (compressed fields) "
    "| pretrain s | quantize s | finetune s | total s |"
  )
  lines = [header, "|" + "---|" * (header.count("|") - 1)]
  for dataset, backbone, report in rows:
    kept = report.get("compressed", {})
    delta = kept["test_auc"] - report["full"]["test_auc"] if kept else float("nan")
    memory = report["memory"]
    only = memory.get("compressed_fields_only", {})
    timings = report.get("timings", {})
    seconds = [timings.get(s, 0.0) for s in ("pretrain", "quantize", "finetune")]
    total = sum(timings.get(s, 0.0) for s in ("data", *STAGES))
    lines.append(
      f"| {dataset} | {backbone} | {_auc(report, 'full')} | {_auc(report, 'compressed_swap')} "
      f"| {_auc(report, 'compressed_finetune')} | {kept.get('source', '—')} | {delta:+.4f} "
      f"| {memory['ratio_packed']:.1f}x | {only.get('ratio_packed', float('nan')):.1f}x "
      + "".join(f"| {s:.0f} " for s in seconds)
      + f"| {total:.0f} |"
    )
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--datasets", default=",".join(DATASETS), help="comma list of datasets")
  parser.add_argument("--models", default=",".join(MODELS), help="comma list of backbones")
  parser.add_argument("--epochs", type=int, default=0, help="train.epochs override (0: config)")
  parser.add_argument("--out", default="/tmp/mec_bench_quality", help="root of the workdirs")
  args = parser.parse_args()
  from absl import logging

  logging.set_verbosity(logging.WARNING)

  rows = []
  start = time.time()
  for dataset in args.datasets.split(","):
    if dataset not in DATASETS:
      parser.error(f"--datasets: unknown {dataset!r}; expected some of {sorted(DATASETS)}")
    folder = DATA_ROOT / DATASETS[dataset]
    if not folder.is_dir():
      print(f"skipping {dataset}: {folder.resolve()} does not exist")
      continue
    for backbone in args.models.split(","):
      if backbone not in registry.MODEL_NAMES:
        parser.error(f"--models: unknown {backbone!r}; expected some of {MODELS}")
      rows.append((dataset, backbone, run_pair(dataset, backbone, args)))
  if not rows:
    print("nothing to report")
    return
  text = table(rows)
  print()
  print(text)
  print(f"\nbench wall time {time.time() - start:.0f}s; workdirs under {args.out}")
  Path(args.out).mkdir(parents=True, exist_ok=True)
  (Path(args.out) / "results.md").write_text(text + "\n")


if __name__ == "__main__":
  main()
