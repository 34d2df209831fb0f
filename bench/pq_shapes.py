"""PQ's (M, K) within a byte budget: every candidate's swap-in valid AUC, and the kept one after C.

With ``compress.target_ratio`` stage B of ``pq`` tries up to ``compress.pq_candidates`` settings
(`mec_jax.methods.budget.pq_candidates`: per M its largest K that fits, ranked by bytes) and
keeps the best swap-in on validation. This runs, per ratio, one grid cell with every candidate
(``--candidates``, default all) through stages B and C, and prints each candidate's bytes, code
capacity, swap-in valid AUC and rank, the kept one's test AUC after stage C and the full model's,
and stage B's wall time. ``--each`` also runs stage C on every candidate alone (``quantize.*`` at
that M, K, no target ratio), to check that the valid ranking picks well.

  nice -n 19 python bench/pq_shapes.py --config=configs/movielens.py --ratios=25,50 \
    --workdir=/tmp/pq_shapes_ml --seed=2024 --each

Stage A is shared by the cells (`mec_jax.experiments.runner`); finished cells are reused.
"""

from __future__ import annotations

import argparse
import math
import time

import _common  # noqa: F401  (puts the checkout's configs on sys.path)

from mec_jax.experiments import runner
from mec_jax.methods import budget
from mec_jax.methods.pq import shape_label


def _load_config(path: str):
  import importlib.util

  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _shapes(report: dict, dim: int, ratio: float, count: int):
  """``(candidates, {candidate: bytes}, budget, vocabularies)`` of the run in ``report``."""
  vocabs = [f["vocab_size"] for f in report["compressed_fields"].values()]
  total = int(sum(vocabs) * dim * budget.FLOAT_BYTES / ratio)  # as budget.budget_bytes
  shapes = budget.pq_candidates(vocabs, dim, total, count)
  return shapes, {s: budget.pq_bytes(vocabs, dim, *s) for s in shapes}, total, vocabs


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/movielens.py")
  parser.add_argument("--ratios", default="25", help="comma-separated target ratios")
  parser.add_argument("--seed", type=int, default=2024)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--candidates", type=int, default=99, help="pq_candidates (99: all)")
  parser.add_argument("--each", action="store_true", help="stage C on every candidate alone")
  args = parser.parse_args()

  config = _load_config(args.config)
  stage_a = runner.run_stage_a(config, args.seed, args.workdir)
  full = runner.read_json(f"{stage_a}/stage_a.json")["full"]
  print(f"{args.config} seed {args.seed}: full test AUC {full['test_auc']:.4f}")
  for ratio in (float(r) for r in args.ratios.split(",")):
    over = {"compress.target_ratio": ratio, "compress.pq_candidates": args.candidates}
    start = time.time()
    rec = runner.run_cell(config, args.seed, over, args.workdir, stage_a)
    report = rec["report"]
    dim = config.model.embed_dim
    shapes, sizes, total, vocabs = _shapes(report, dim, ratio, args.candidates)
    print(f"\n{ratio:g}x: budget {total} bytes, vocabularies {vocabs}, {len(shapes)} candidates")
    field = next(iter(report["compressed_fields"].values()))
    scores = field.get("shape_selection", {})
    order = sorted(scores, key=lambda k: -scores[k]["valid_score"])
    kept = shape_label((field["num_subspaces"], field["codebook_size"]))
    cell_dir = f"{args.workdir}/cells/{runner.cell_name(over)}/seed{args.seed}"
    seconds_b = runner.read_json(f"{cell_dir}/timings.json")["quantize"]  # every try, scored
    finetuned = {}
    if args.each:
      for shape in shapes:
        # no target ratio: quantize.* as given (within the budget: a candidate)
        one = {"quantize.num_subspaces": shape[0], "quantize.codebook_size": shape[1]}
        cell = runner.run_cell(config, args.seed, one, args.workdir, stage_a)
        finetuned[shape] = cell["report"]["compressed"]["test_auc"]
    print("| try | (M, K) | bytes | M log2 K | swap-in valid AUC | valid rank | test AUC after C |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for i, shape in enumerate(shapes):
      label = shape_label(shape)
      score = scores.get(label, {})
      rank = order.index(label) + 1 if label in order else "-"
      test = f"{finetuned[shape]:.4f}" if shape in finetuned else ""
      mark = " (kept)" if label == kept else ""
      valid = f"{score['valid_auc']:.4f}" if score else ""
      print(
        f"| {i + 1} | ({shape[0]}, {shape[1]}){mark} | {sizes[shape]:,} | "
        f"{shape[0] * math.log2(shape[1]):g} | {valid} | {rank} | {test} |"
      )
    comp = report["compressed"]
    print(
      f"kept {kept}: test AUC {comp['test_auc']:.4f} ({comp.get('source')}), full "
      f"{full['test_auc']:.4f}, diff {comp['test_auc'] - full['test_auc']:+.4f}; bytes "
      f"{report['memory']['compressed_fields_only']['compressed_bytes_packed']:,}; stage B ("
      f"{len(shapes)} settings, each scored) {seconds_b:.0f} s; cell {rec['seconds']:.0f} s "
      f"(this call {time.time() - start:.0f} s)"
    )


if __name__ == "__main__":
  main()
