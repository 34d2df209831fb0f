"""One accelerator check of mec_jax: every figure issue 20 asks of a GPU, in sections.

Sections (each timed and guarded: one that fails prints its error and the rest still run; the
exit status is 1 if any failed):

* ``env``: jax / jaxlib / flax versions, the devices, ``XLA_FLAGS``.
* ``lowering``: the dense and the row-sparse DeepFM train steps lowered for CUDA (works on any
  host); prints ``cuda lowering: contended scatter-adds dense=N sparse=M`` (`count_contended`).
* ``scatter``: the gradient of an embedding lookup at Zipf-colliding ids: today's scatter-add
  (``x.at[ids].add``), ``jax.ops.segment_sum(indices_are_sorted=True)`` after a sort, and the
  library's contention-free segment sum when present (`_segment_sum_candidates`, the hook for
  ``bench/grad_path.py``); once without and once with
  ``--xla_backend_extra_options=-nvptx-allow-ftz-atomics``, each in a fresh process (XLA reads
  its flags once, when the backend starts).
* ``deepfm``: stage-A DeepFM (d=40, MLP 300x3, one big field + five small, Zipf ids) ms/step and
  samples/s, dense vs row-sparse tables, and the device's peak memory; one process per size on an
  accelerator so each peak is its own.
* ``loader``: `BatchLoader` samples/s (Criteo-shaped memory-mapped rows, shuffled, plus
  ``jax.device_put``) beside the step's.
* ``stage_b``: `quantize_table` on Zipf-weighted ``[rows, 40]`` tables, seconds and rows/s (a
  size is skipped when less than 150 s of the budget is left).
* ``synthetic_large``: ``configs/synthetic_large.py`` end to end (`pipeline.run`), seconds per
  stage; skipped on an accelerator when the time budget (``--budget_s``) has run out.
* ``kmeans``: flat vs two-level k-means (`bench/two_level.py`'s mixture, 2M x 40 rows, 4
  sub-spaces, K = 16,384: 15 x 2^31 pairs a pass, two-level on a CPU, flat on an accelerator by
  default), seconds and inertia; the evidence for `kmeans.ACCELERATOR_MAX_FLAT_PAIRS` (skipped
  when less than 90 s of the budget is left).

``--cpu`` runs the same sections at tiny sizes on the CPU (CI runs it through ``bench/gpu.sh``).

  python bench/gpu_check.py [--cpu] [--only deepfm,loader] [--budget_s 450]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from types import SimpleNamespace

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
FTZ_FLAG = "--xla_backend_extra_options=-nvptx-allow-ftz-atomics"
SECTIONS = (
  "env", "lowering", "scatter", "deepfm", "loader", "stage_b", "synthetic_large", "kmeans"
)  # fmt: skip

# Sizes per mode: an accelerator gets the issue's sizes, --cpu tiny ones (seconds in all).
SIZES = {
  "gpu": SimpleNamespace(
    batch=8192, rows=(10**4, 10**6, 10**7), steps=30, warmup=3, scatter_ids=8192 * 26,
    scatter_vocabs=(10**4, 10**6), scatter_dim=40, loader_rows=4_000_000, loader_batches=300,
    stage_b_rows=(4_000_000, 32_000_000), pipeline_scale=1, kmeans=(2_000_000, 16_384),
  ),
  "cpu": SimpleNamespace(
    batch=256, rows=(10**3,), steps=3, warmup=1, scatter_ids=4096, scatter_vocabs=(1000,),
    scatter_dim=8, loader_rows=40_000, loader_batches=20, stage_b_rows=(5_000,),
    pipeline_scale=0, kmeans=(5_000, 64),
  ),
}  # fmt: skip


# --------------------------------------------------------------------------- lowering counter


def count_contended(stablehlo_text: str) -> int:
  """Scatters with an add reduction and ``unique_indices = false`` in StableHLO text.

  These are the ops jaxlib 0.10.2-0.11.0 compile, on GPU, into a compare-and-swap loop that
  collapses when indices collide (jax #38806). A scatter whose body is not an add (a ``set``) or
  that declares its indices unique cannot contend.

  Args:
    stablehlo_text: ``jax.jit(f).trace(...).lower(...).as_text()``.

  Returns:
    The number of such scatter ops in the text.
  """
  from mec_jax.ops.lowering import contended_scatter_adds  # the one definition

  return contended_scatter_adds(stablehlo_text)


def _bench_module(name: str):
  """Imports ``bench/<name>.py`` (bench/ is no package)."""
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


# --------------------------------------------------------------------------- DeepFM stage A


def build_deepfm(rows: int, sparse: bool):
  """DeepFM of ``bench/vocab_scaling.py`` with its big field dense or row-sparse (lazy Adam).

  Returns:
    ``(train_step, state, mesh)``: the jitted step ``(state, batch) -> (state, loss)``.
  """
  import jax

  from mec_jax import mesh as meshes
  from mec_jax.train import optimizer as optim
  from mec_jax.train import sparse as sparse_lib
  from mec_jax.train import steps

  model = _bench_module("vocab_scaling").jax_model(rows)
  model.train()
  mesh = meshes.data_mesh()
  graphdef, params, rng_state, other = steps.split_model(model)
  optimizer = "lazy_adam" if sparse else "sgd"
  fields = sparse_lib.find_sparse_fields(
    model, min_rows=rows if sparse else 0, rate_of_path=lambda _: 1e-3
  )
  tx = optim.make_optimizer(1e-3)
  state, shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer=optimizer
  )
  train_step = steps.make_train_step(
    graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(0), sparse_fields=fields,
    sparse_optimizer=optimizer, grad_clip_norm=10.0, state_sharding=shardings,
  )  # fmt: skip
  return train_step, state, mesh


def deepfm_batches(rows: int, batch: int, count: int, seed: int = 0) -> list[dict]:
  """Zipf-distributed batches for `build_deepfm`'s fields."""
  vs = _bench_module("vocab_scaling")
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    ids = np.stack([vs.zipf_ids(rng, v, batch) for v in (rows, *vs.SMALL_VOCABS)], axis=1)
    label = (rng.random(batch) < 0.2).astype(np.float32)
    out.append({"ids": ids, "values": np.ones(ids.shape, np.float32), "label": label})
  return out


def lowering_counts(rows: int = 1000, batch: int = 64) -> dict[str, int]:
  """`count_contended` of the dense and the row-sparse DeepFM train steps lowered for CUDA."""
  from mec_jax import mesh as meshes

  counts = {}
  for name in ("dense", "sparse"):
    train_step, state, mesh = build_deepfm(rows, name == "sparse")
    batch_arrays = meshes.shard_batch(deepfm_batches(rows, batch, 1)[0], mesh)
    lowered = train_step.trace(state, batch_arrays).lower(lowering_platforms=("cuda",))
    counts[name] = count_contended(lowered.as_text())
  return counts


def time_deepfm(rows: int, sparse: bool, sizes) -> dict:
  """ms/step, samples/s and device peak GB of one table mode at ``rows``."""
  import jax

  from mec_jax import mesh as meshes

  train_step, state, mesh = build_deepfm(rows, sparse)
  batches = [meshes.shard_batch(b, mesh) for b in deepfm_batches(rows, sizes.batch, 4)]
  for i in range(sizes.warmup):
    state, loss = train_step(state, batches[i % len(batches)])
  jax.block_until_ready(loss)
  start = time.perf_counter()
  for i in range(sizes.steps):
    state, loss = train_step(state, batches[i % len(batches)])
  loss = float(loss)
  seconds = (time.perf_counter() - start) / sizes.steps
  if not np.isfinite(loss):
    raise FloatingPointError(f"deepfm rows={rows} sparse={sparse}: loss {loss}")
  peak = _bench_module("vocab_scaling")._device_peak_gb(jax.local_devices()[0])
  return {
    "rows": rows,
    "tables": "row-sparse" if sparse else "dense",
    "ms_per_step": 1e3 * seconds,
    "samples_per_s": sizes.batch / seconds,
    "peak_gb": peak,
  }


# --------------------------------------------------------------------------- scatter microbench


def _segment_sum_candidates() -> dict:
  """``name -> f(data [n, d], ids [n], num_segments)`` of the segment sums to compare.

  Hook: `mec_jax.ops.segment_sum_sorted` (the contention-free form) and ``bench/grad_path.py``'s
  ``CANDIDATES`` dict, when they exist, join the two formulations that always exist.
  """
  import jax
  import jax.numpy as jnp

  def scatter_add(data, ids, n):
    return jnp.zeros((n, data.shape[1]), data.dtype).at[ids].add(data)

  def sorted_segment_sum(data, ids, n):
    order = jnp.argsort(ids)
    return jax.ops.segment_sum(data[order], ids[order], n, indices_are_sorted=True)

  out = {"x.at[ids].add": scatter_add, "sort + segment_sum(sorted)": sorted_segment_sum}
  try:
    from mec_jax.ops import segment_sum_sorted

    out["mec_jax.ops.segment_sum_sorted"] = segment_sum_sorted
  except ImportError:
    pass
  if os.path.exists(os.path.join(BENCH, "grad_path.py")):
    out.update(getattr(_bench_module("grad_path"), "CANDIDATES", {}))
  return out


def time_segment_sums(sizes) -> list[dict]:
  """ms per call of every candidate at Zipf ids (``sizes.scatter_ids`` of them, d columns)."""
  import jax
  import jax.numpy as jnp

  vs = _bench_module("vocab_scaling")
  rng = np.random.default_rng(0)
  records = []
  for vocab in sizes.scatter_vocabs:
    ids = jnp.asarray(vs.zipf_ids(rng, vocab, sizes.scatter_ids))
    data = jnp.asarray(rng.standard_normal((sizes.scatter_ids, sizes.scatter_dim), np.float32))
    reference = None
    for name, fn in _segment_sum_candidates().items():
      jitted = jax.jit(fn, static_argnums=2)
      out = jax.block_until_ready(jitted(data, ids, vocab))
      if reference is None:
        reference = np.asarray(out)
      error = float(np.max(np.abs(np.asarray(out) - reference)))
      repeats = max(3, sizes.steps)
      start = time.perf_counter()
      for _ in range(repeats):
        out = jitted(data, ids, vocab)
      jax.block_until_ready(out)
      records.append(
        {
          "vocab": vocab,
          "op": name,
          "ms": 1e3 * (time.perf_counter() - start) / repeats,
          "max_abs_diff": error,
          "flag": FTZ_FLAG in os.environ.get("XLA_FLAGS", ""),
        }
      )
  return records


# --------------------------------------------------------------------------- sections


def section_env(ctx) -> None:
  import flax
  import jax
  import jaxlib

  print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, flax {flax.__version__}")
  print(f"python {sys.version.split()[0]}; devices: {jax.devices()}")
  print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")


def section_lowering(ctx) -> None:
  counts = lowering_counts()
  print(f"cuda lowering: contended scatter-adds dense={counts['dense']} sparse={counts['sparse']}")


def section_scatter(ctx) -> None:
  print("| XLA_FLAGS ftz atomics | vocab | op | ms/call | max abs diff vs first |")
  print("|---|---|---|---|---|")
  for flag in (False, True):
    env = dict(os.environ)
    if flag:
      env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FTZ_FLAG}".strip()
    for record in _child(ctx, "scatter", env):
      print(
        f"| {'on' if flag else 'off'} | {record['vocab']:,} | {record['op']} | "
        f"{record['ms']:.3f} | {record['max_abs_diff']:.2e} |"
      )


def section_deepfm(ctx) -> None:
  print(f"DeepFM stage A, batch {ctx.sizes.batch}, d=40, MLP 300x3, Zipf ids")
  print("| rows | tables | ms/step | samples/s | device peak GB |")
  print("|---|---|---|---|---|")
  for rows in ctx.sizes.rows:
    if ctx.cpu:  # in-process: the CPU reports no device peak to keep apart
      records = [time_deepfm(rows, sparse, ctx.sizes) for sparse in (True, False)]
    else:  # row-sparse first, so each peak is its own mode's (dense needs more)
      records = _child(ctx, f"deepfm:{rows}", dict(os.environ))
    for r in records:
      peak = "-" if r["peak_gb"] is None else f"{r['peak_gb']:.2f}"
      print(
        f"| {r['rows']:,} | {r['tables']} | {r['ms_per_step']:.2f} | "
        f"{r['samples_per_s']:,.0f} | {peak} |"
      )
      ctx.step_rates[r["tables"]] = r["samples_per_s"]


def section_loader(ctx) -> None:
  import jax

  from mec_jax.data.loader import BatchLoader

  lt = _bench_module("loader_throughput")
  with tempfile.TemporaryDirectory(prefix="gpu_check_loader-") as directory:
    split = lt.write_cache(directory, ctx.sizes.loader_rows)
    loader = BatchLoader(split, ctx.sizes.batch, shuffle=True, drop_remainder=True)
    lt.gather_only(loader, loader.num_batches)  # page the cache in
    device = jax.local_devices()[0]
    alone, _ = lt.iterate(loader, ctx.sizes.loader_batches)
    put, _ = lt.iterate(loader, ctx.sizes.loader_batches, lambda b: jax.device_put(b, device))
  print(f"loader alone ({ctx.sizes.loader_rows:,} rows, batch {ctx.sizes.batch}): {alone:,.0f}/s")
  print(f"loader + device_put to {device.platform}: {put:,.0f} samples/s")
  for tables, rate in ctx.step_rates.items():
    verdict = "loader keeps up" if put >= rate else "LOADER IS THE BOTTLENECK"
    print(f"  vs {tables} DeepFM step at the largest size: {rate:,.0f} samples/s ({verdict})")


def section_stage_b(ctx) -> None:
  import jax

  from mec_jax.compression import QuantizeSettings, quantizer

  qs = _bench_module("quantize_scale")
  args = SimpleNamespace(seed=0, clusters=32, zipf=1.1, interactions_per_row=20.0)
  settings = QuantizeSettings(num_subspaces=2, codebook_size=256, seed=0)
  if ctx.cpu:
    # k-means only: the encoder's compiles alone take a minute of CPU.
    settings = QuantizeSettings(variant="kmeans", num_subspaces=2, codebook_size=16, seed=0)
  print(
    f"stage B: quantize_table variant={settings.variant}, d=40, "
    f"{settings.num_subspaces}x{settings.codebook_size} codes"
  )
  print("| rows | generate s | quantize s | rows/s | weighted rel. error |")
  print("|---|---|---|---|---|")
  for rows in ctx.sizes.stage_b_rows:
    left = ctx.budget_s - (time.perf_counter() - ctx.start)
    if not ctx.cpu and left < 150:
      print(f"| {rows:,} | skipped: {left:.0f}s of the {ctx.budget_s:.0f}s budget left | | | |")
      continue
    start = time.perf_counter()
    table, counts, bias = qs.zipf_table(rows, 40, args)
    generate = time.perf_counter() - start
    start = time.perf_counter()
    compressed = quantizer.quantize_table(jax.random.key(0), table, counts, settings, bias=bias)
    seconds = time.perf_counter() - start
    error = compressed.stats["recon_error_weighted_relative"]
    print(f"| {rows:,} | {generate:.1f} | {seconds:.1f} | {rows / seconds:,.0f} | {error:.3f} |")
    del table, counts, bias, compressed


def section_synthetic_large(ctx) -> None:
  left = ctx.budget_s - (time.perf_counter() - ctx.start)
  if not ctx.cpu and left < 240:
    print(f"skipped: {left:.0f}s of the {ctx.budget_s:.0f}s budget left (needs ~240s)")
    return
  from mec_jax import pipeline

  sys.path.insert(0, REPO)
  from configs import synthetic_large

  config = synthetic_large.get_config()
  config.train.progress = False
  if ctx.cpu:  # the same stages on a few thousand rows and a small model
    syn = config.data.synthetic
    syn.num_rows = 2000
    config.model.embed_dim, config.model.hidden_units = 8, (32, 32)
    syn.vocab_sizes = tuple(max(2, v // 4000) for v in syn.vocab_sizes)
    config.train.batch_size, config.train.eval_batch_size = 256, 1024
    config.train.checkpoint_every_steps = 0
    config.quantize.min_vocab, config.quantize.codebook_size = 200, 16
    config.quantize.variant, config.quantize.kmeans_iters = "kmeans", 3
  with tempfile.TemporaryDirectory(prefix="gpu_check_synthetic-") as workdir:
    start = time.perf_counter()
    report = pipeline.run(config, workdir)
    total = time.perf_counter() - start
    with open(os.path.join(workdir, "timings.json")) as fh:
      timings = json.load(fh)
  stages = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
  print(f"synthetic_large ({config.data.synthetic.num_rows:,} rows): {total:.1f}s: {stages}")
  full, small = report["full"]["test_auc"], report["compressed"]["test_auc"]
  print(f"test AUC full {full:.4f}, compressed {small:.4f}")


def section_kmeans(ctx) -> None:
  left = ctx.budget_s - (time.perf_counter() - ctx.start)
  if not ctx.cpu and left < 90:
    print(f"skipped: {left:.0f}s of the {ctx.budget_s:.0f}s budget left (needs ~90s)")
    return
  import math

  import jax

  from mec_jax.compression.kmeans import batched_kmeans

  two_level = _bench_module("two_level")
  rows, clusters = ctx.sizes.kmeans
  x, w = two_level.load_rows(None, rows, weighted=False)
  keys = jax.random.split(jax.random.key(0), 4)
  print(f"k-means: {rows:,} x {x.shape[1]}, 4 sub-spaces, K = {clusters:,} (first call compiles)")
  print("| path | seconds | inertia vs flat |")
  print("|---|---|---|")
  flat = None
  for name, limit in (("flat", math.inf), ("two-level", 1)):
    start = time.perf_counter()
    result = batched_kmeans(keys, x, w, 4, clusters, max_flat_pairs=limit)
    centroids = np.asarray(result.centroids)
    seconds = time.perf_counter() - start
    inertia = two_level.codes_inertia(x, w, centroids, result.assignments, 4)
    flat = inertia if flat is None else flat
    print(f"| {name} | {seconds:.1f} | {inertia / flat:.3f} |")


# --------------------------------------------------------------------------- driver


def _child(ctx, job: str, env: dict) -> list[dict]:
  """Runs ``job`` in a fresh process (its own XLA flags and device peak); its JSON records."""
  command = [sys.executable, os.path.abspath(__file__), "--child", job]
  if ctx.cpu:
    command.append("--cpu")
  proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
  if proc.returncode:
    raise RuntimeError(f"child {job!r} exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
  return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def run_child(job: str, sizes) -> None:
  if job == "scatter":
    records = time_segment_sums(sizes)
  else:  # deepfm:<rows>
    rows = int(job.split(":")[1])
    records = [time_deepfm(rows, sparse, sizes) for sparse in (True, False)]
  for record in records:
    print(json.dumps(record), flush=True)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU")
  parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
  parser.add_argument("--budget_s", type=float, default=450.0, help="skip synthetic_large after")
  parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  sizes = SIZES["cpu" if args.cpu else "gpu"]
  if args.child:
    run_child(args.child, sizes)
    return 0
  only = [s for s in args.only.split(",") if s]
  unknown = sorted(set(only) - set(SECTIONS))
  if unknown:
    parser.error(f"--only: unknown sections {unknown}; expected some of {list(SECTIONS)}")
  ctx = SimpleNamespace(
    cpu=args.cpu, sizes=sizes, budget_s=args.budget_s, start=time.perf_counter(), step_rates={}
  )
  failed = []
  for name in only:
    print(f"\n== {name}", flush=True)
    start = time.perf_counter()
    try:
      globals()[f"section_{name}"](ctx)
      status = "ok"
    except Exception:  # noqa: BLE001 - one failing section must not stop the others
      traceback.print_exc(file=sys.stdout)
      failed.append(name)
      status = "FAILED"
    print(f"== {name} {status} in {time.perf_counter() - start:.1f}s", flush=True)
  total = time.perf_counter() - ctx.start
  print(f"\ngpu_check: {len(only) - len(failed)}/{len(only)} sections ok in {total:.0f}s")
  if failed:
    print(f"gpu_check: failed sections: {', '.join(failed)}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
