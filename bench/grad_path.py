"""Embedding-gradient paths: the contention-free one (`mec_jax.ops.segment`) against today's.

Three sections, each printed as a markdown table:

1. ``segment-sum``: `segment_sum_rows`, a microbenchmark of one segment sum of ``[n, 40]`` rows
   onto a table at Zipf-colliding ids: today's scatter-add (``jax.ops.segment_sum``) vs the
   sorted form (sort, segmented scan, unique scatter). Importable (``bench/gpu.sh`` calls it on a
   GPU, with and without ``-nvptx-allow-ftz-atomics``).
2. ``precision``: float32 error of the segmented scan vs a global cumsum with differences at the
   segment boundaries (the simpler contention-free form) against a float64 sum.
3. ``step``: DeepFM train step (vocab_scaling's model: one field of V rows + five small ones,
   d=40, batch 4096), dense and row-sparse tables, at V = 10^4 and 10^7, with the gradient path of
   ``today`` (``jnp.take`` + ``jnp.unique``, the code before `mec_jax.ops`), ``shipped`` (what the
   library now lowers on this backend) and ``sorted`` (the GPU form forced here too). All variants
   step the same state in turn (AOT-compiled each under its own path), so load hits them alike;
   the ratio to ``today`` is the figure to trust.

  python bench/grad_path.py [--sections segment,precision,step] [--sizes 1e4,1e7] [--steps 6]

Runs under ``flock /tmp/mec_heavy.lock`` when it is there (a dense 10^7 step holds ~7 GB).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

VARIANTS = ("today", "shipped", "sorted")


def zipf_ids(rng, vocab: int, size: int) -> np.ndarray:
  """Ranks with P(r) ~ 1/(r+1) on [0, vocab) (as bench/vocab_scaling.py)."""
  return np.minimum(np.floor(vocab ** rng.random(size)) - 1, vocab - 1).astype(np.int32)


def _median_ms(fns: dict, args: dict, reps: int) -> dict:
  """Median ms per call of each ``fns[k](*args[k])``, calls interleaved (after one warm-up each)."""
  import jax

  for name, fn in fns.items():
    jax.block_until_ready(fn(*args[name]))
  times = {name: [] for name in fns}
  for _ in range(reps):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args[name]))
      times[name].append(time.perf_counter() - start)
  return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def segment_sum_rows(sizes=((256, 65536), (10**4, 8192), (10**7, 8192)), dim=40, reps=20, seed=0):
  """Today's scatter-add vs the sorted segment sum, one ``[n, dim]`` float32 sum per call.

  Args:
    sizes: ``(table rows, ids per call)`` pairs; ids are Zipf over the rows, so the top rows
      collide (256 rows = one codebook's K codewords getting a whole batch).
    dim: row width.
    reps: timed calls per method (median reported).
    seed: of the ids and rows.

  Returns:
    One dict per size: ``rows, ids, distinct, dim, scatter_ms, sorted_ms, speedup`` (scatter /
    sorted), ``max_abs_diff`` between the two, and ``platform``.
  """
  import jax
  import jax.numpy as jnp

  from mec_jax.ops import segment

  out = []
  rng = np.random.default_rng(seed)
  for rows, n in sizes:
    ids = jnp.asarray(zipf_ids(rng, rows, n))
    data = jnp.asarray(rng.normal(size=(n, dim)), jnp.float32)
    fns = {
      "scatter": jax.jit(functools.partial(segment.segment_sum_reference, num_segments=rows)),
      "sorted": jax.jit(functools.partial(segment.segment_sum_sorted, num_segments=rows)),
    }
    ms = _median_ms(fns, {k: (data, ids) for k in fns}, reps)
    diff = float(jnp.max(jnp.abs(fns["scatter"](data, ids) - fns["sorted"](data, ids))))
    out.append(
      {
        "rows": rows,
        "ids": n,
        "distinct": int(np.unique(np.asarray(ids)).size),
        "dim": dim,
        "scatter_ms": ms["scatter"],
        "sorted_ms": ms["sorted"],
        "speedup": ms["scatter"] / ms["sorted"],
        "max_abs_diff": diff,
        "platform": jax.devices()[0].platform,
      }
    )
  return out


def precision_rows(n=100_000, segments=8, heavy=1000.0, seed=1):
  """Max abs error (vs float64) of the small segments' sums when segment 0 carries large values."""
  import jax
  import jax.numpy as jnp

  from mec_jax.ops import segment

  rng = np.random.default_rng(seed)
  ids = np.sort(rng.integers(0, segments, n)).astype(np.int32)
  data = (rng.normal(size=n) + heavy * (ids == 0)).astype(np.float32)
  want = np.array([data[ids == k].astype(np.float64).sum() for k in range(segments)])
  scan = np.asarray(jax.jit(segment.segment_sum_sorted, static_argnums=2)(data, ids, segments))
  running = np.asarray(jnp.cumsum(jnp.asarray(data)), np.float64)
  ends = np.r_[np.nonzero(np.diff(ids))[0], n - 1]
  cumsum = np.diff(np.r_[0.0, running[ends]])
  return [
    {"form": "segmented scan", "max_abs_error": float(np.abs(scan - want)[1:].max())},
    {
      "form": "global cumsum + differences",
      "max_abs_error": float(np.abs(cumsum - want)[1:].max()),
    },
  ]


def _jnp_unique(column, fill):
  import jax.numpy as jnp

  return jnp.unique(column, size=column.shape[0], fill_value=fill, return_inverse=True)


@contextlib.contextmanager
def gradient_path(variant: str):
  """Traces mec_jax's lookups and sparse unique with the given variant's functions."""
  import jax.numpy as jnp

  from mec_jax.layers import embed
  from mec_jax.ops import take_rows
  from mec_jax.train import sparse

  saved = embed.take_rows, sparse.unique_with_inverse
  if variant == "today":
    embed.take_rows = lambda table, ids: jnp.take(table, ids, axis=0)
    sparse.unique_with_inverse = _jnp_unique
  elif variant == "sorted":
    embed.take_rows = functools.partial(take_rows, method="sorted")
  try:
    yield
  finally:
    embed.take_rows, sparse.unique_with_inverse = saved


def step_rows(rows: int, sparse_tables: bool, steps: int, variants=VARIANTS):
  """ms/step of each variant on one DeepFM state (see the module docstring)."""
  import jax
  import vocab_scaling as vs

  from mec_jax import mesh as meshes
  from mec_jax.train import optimizer as optim
  from mec_jax.train import sparse
  from mec_jax.train import steps as train_steps

  model = vs.jax_model(rows)
  mesh = meshes.data_mesh()
  model.train()
  graphdef, params, rng_state, other = train_steps.split_model(model)
  optimizer = "rowwise_adagrad" if sparse_tables else "sgd"
  fields = sparse.find_sparse_fields(
    model, min_rows=rows if sparse_tables else 0, rate_of_path=lambda _: 1e-3
  )
  del model
  tx = optim.make_optimizer(1e-3)
  state, shardings = train_steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer=optimizer
  )
  del params
  batches = [meshes.shard_batch(b, mesh) for b in vs.make_batches(rows, steps + 1)]
  compiled = {}
  for variant in variants:
    with gradient_path(variant):
      fn = train_steps.make_train_step(
        graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(0), sparse_fields=fields,
        sparse_optimizer=optimizer, grad_clip_norm=10.0, state_sharding=shardings,
      )  # fmt: skip
      compiled[variant] = fn.lower(state, batches[0]).compile()
  times = {v: [] for v in variants}
  for i, batch in enumerate(batches):
    order = variants[i % len(variants) :] + variants[: i % len(variants)]
    for variant in order:
      start = time.perf_counter()
      state, loss = compiled[variant](state, batch)
      assert np.isfinite(float(loss)), (variant, float(loss))
      if i:  # the first batch warms every variant up
        times[variant].append(time.perf_counter() - start)
  ms = {v: 1e3 * float(np.median(t)) for v, t in times.items()}
  return [
    {
      "rows": rows,
      "tables": "sparse" if sparse_tables else "dense",
      "variant": v,
      "ms_per_step": ms[v],
      "vs_today": ms[v] / ms["today"],
    }
    for v in variants
  ]


def print_table(records: list[dict]) -> None:
  keys = list(records[0])
  print("| " + " | ".join(keys) + " |")
  print("|" + "---|" * len(keys))
  for r in records:
    cells = [f"{v:,.3g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
             for v in r.values()]  # fmt: skip
    print("| " + " | ".join(cells) + " |")
  print()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sections", default="segment,precision,step")
  parser.add_argument("--sizes", default="1e4,1e7", help="table rows of the step section")
  parser.add_argument("--steps", type=int, default=6, help="timed steps per variant")
  parser.add_argument("--reps", type=int, default=20, help="timed calls of the microbenchmark")
  args = parser.parse_args()
  sections = args.sections.split(",")
  print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores\n")
  if "segment" in sections:
    print("segment-sum, [n, 40] float32 rows at Zipf ids (median ms per call):\n")
    print_table(segment_sum_rows(reps=args.reps))
  if "precision" in sections:
    print("precision: 10^5 sorted rows, 8 segments, segment 0 offset by 1000 (error vs float64):\n")
    print_table(precision_rows())
  if "step" in sections:
    records = []
    for size in (int(float(s)) for s in args.sizes.split(",")):
      for sparse_tables in (False, True):
        steps = min(args.steps, 4) if size >= 10**6 and not sparse_tables else args.steps
        records += step_rows(size, sparse_tables, steps)
    print("DeepFM train step, batch 4096 (median ms/step, same state, variants interleaved):\n")
    print_table(records)
  print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  if os.path.exists("/tmp/mec_heavy.lock") and not os.environ.get("MEC_HEAVY_LOCKED"):
    os.environ["MEC_HEAVY_LOCKED"] = "1"
    os.execvp("flock", ["flock", "/tmp/mec_heavy.lock", sys.executable, *sys.argv])
  main()
