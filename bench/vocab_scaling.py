"""Train-step time and peak memory against vocabulary size: dense vs row-sparse tables, JAX vs PyTorch.

DeepFM (MLP [300]*3, first-order weights, FM term), d=40, batch 4096, one big field of V rows plus
five small ones; ids Zipf-distributed (rank r with probability ~1/r, ids sorted by popularity as
the encoder stores them). Implementations, each in its own subprocess (so its peak RSS is its own),
all on the same batches (same seed):

* ``jax_dense``: mec_jax with every table an Optax (Adam) parameter (``sparse_min_rows=0``);
* ``jax_adagrad`` / ``jax_lazy_adam``: mec_jax with the big table row-sparse
  (``train.sparse_optimizer`` rowwise_adagrad / lazy_adam), the rest Adam;
* ``torch_sparse``: PyTorch ``nn.Embedding(sparse=True)`` + ``SparseAdam`` for the big table
  (embedding and first-order weight), Adam for the rest (global-norm clip over the dense part);
* ``torch_dense``: PyTorch, every table dense, Adam, clip 10.

Then the sparse implementations again, interleaved step by step in one process per size, so that
the load of a shared machine hits them alike: those ratios are the comparison to trust.

  python bench/vocab_scaling.py [--sizes 1e4,1e5,1e6,1e7] [--impls ...] [--interleave ...]

Every child runs under ``flock /tmp/mec_heavy.lock`` (timings and > 3 GB jobs take turns). Prints a
markdown table: ms/step (median of the timed steps), peak RSS (GB), and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

IMPLS = ("jax_dense", "jax_adagrad", "jax_lazy_adam", "torch_sparse", "torch_dense")
SMALL_VOCABS = (1000, 100, 50, 20, 10)
DIM, BATCH, HIDDEN = 40, 4096, (300, 300, 300)
LOCK = "/tmp/mec_heavy.lock"


def zipf_ids(rng, vocab: int, size: int) -> np.ndarray:
  """Ranks with P(r) ~ 1/(r+1) on [0, vocab): inverse CDF of the continuous 1/x law."""
  return np.minimum(np.floor(vocab ** rng.random(size)) - 1, vocab - 1).astype(np.int32)


def make_batches(big_vocab: int, count: int, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  vocabs = (big_vocab, *SMALL_VOCABS)
  out = []
  for _ in range(count):
    ids = np.stack([zipf_ids(rng, v, BATCH) for v in vocabs], axis=1)
    out.append(
      {
        "ids": ids,
        "values": np.ones(ids.shape, np.float32),
        "label": (rng.random(BATCH) < 0.2).astype(np.float32),
      }
    )
  return out


def jax_model(big_vocab: int):
  """mec_jax's DeepFM of these benchmarks: one field of ``big_vocab`` rows + `SMALL_VOCABS`."""
  from flax import nnx

  from mec_jax.layers import FieldEmbedding
  from mec_jax.models.registry import build_model

  vocabs = (big_vocab, *SMALL_VOCABS)
  return build_model(
    "deepfm", FieldEmbedding.full(vocabs, DIM, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0),
    hidden_units=HIDDEN,
  )  # fmt: skip


def jax_stepper(big_vocab: int, optimizer: str | None):
  """``step(batch)`` of mec_jax's DeepFM (blocks until done), and a device-peak probe."""
  import jax

  from mec_jax import mesh as meshes
  from mec_jax.train import optimizer as optim
  from mec_jax.train import sparse, steps

  model = jax_model(big_vocab)
  mesh = meshes.data_mesh()
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  min_rows = 0 if optimizer is None else big_vocab
  fields = sparse.find_sparse_fields(model, min_rows=min_rows, rate_of_path=lambda _: 1e-3)
  del model
  tx = optim.make_optimizer(1e-3)
  holder = {}
  holder["state"], shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer=optimizer or "sgd"
  )
  del params
  train_step = steps.make_train_step(
    graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(0), sparse_fields=fields,
    sparse_optimizer=optimizer or "sgd", grad_clip_norm=10.0, state_sharding=shardings,
  )  # fmt: skip

  def step(batch):
    holder["state"], loss = train_step(holder["state"], meshes.shard_batch(batch, mesh))
    loss = float(loss)
    assert np.isfinite(loss), loss

  return step, lambda: _device_peak_gb(jax.local_devices()[0])


def _device_peak_gb(device) -> float | None:
  """Peak bytes in use on an accelerator (None on CPU, which reports no memory stats)."""
  stats = device.memory_stats() if device.platform != "cpu" else None
  return stats["peak_bytes_in_use"] / 2**30 if stats and "peak_bytes_in_use" in stats else None


def torch_stepper(big_vocab: int, sparse_big: bool, threads: int = 0):
  """``step(batch)`` of the PyTorch DeepFM (sparse or dense big table)."""
  import torch
  from torch_deepfm import torch_deepfm  # bench/ is on sys.path when run as a script

  # All cores (its default too; said here so the comparison is explicit), or --torch_threads.
  torch.set_num_threads(threads or os.cpu_count())
  vocabs = (big_vocab, *SMALL_VOCABS)

  torch.manual_seed(0)
  model = torch_deepfm(vocabs, DIM, HIDDEN, sparse_fields=(0,) if sparse_big else (), init_std=1e-4)
  sparse_params = [model.tables[0].weight, model.first[0].weight] if sparse_big else []
  dense_params = [p for p in model.parameters() if all(p is not q for q in sparse_params)]
  optimizers = [torch.optim.Adam(dense_params, lr=1e-3)]
  if sparse_params:
    optimizers.append(torch.optim.SparseAdam(sparse_params, lr=1e-3))
  loss_fn = torch.nn.BCEWithLogitsLoss()

  def step(batch):
    ids, label = torch.from_numpy(batch["ids"]).long(), torch.from_numpy(batch["label"])
    for opt in optimizers:
      opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(ids), label)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(dense_params, 10.0)  # sparse grads: clip_grad_norm_ can't
    for opt in optimizers:
      opt.step()

  return step


def stepper(impl: str, rows: int, torch_threads: int = 0):
  """``(step, device_peak)`` of one implementation."""
  if impl.startswith("jax"):
    optimizer = {"jax_dense": None, "jax_adagrad": "rowwise_adagrad"}.get(impl, "lazy_adam")
    return jax_stepper(rows, optimizer)
  return torch_stepper(rows, impl == "torch_sparse", torch_threads), lambda: None


def child(args) -> None:
  """Times ``args.impls`` on the same batches, interleaved step by step (a load spike hits all
  alike), and reports this process's peak RSS (meaningful with a single impl)."""
  impls = args.impls.split(",")
  dense = any(i in ("jax_dense", "torch_dense") for i in impls)
  steps = 4 if dense and args.rows >= 10**6 else args.steps  # a dense 10^7 step takes seconds
  batches = make_batches(args.rows, steps + args.warmup)
  runners = {impl: stepper(impl, args.rows, args.torch_threads) for impl in impls}
  times = {impl: [] for impl in impls}
  for i, batch in enumerate(batches):
    # Rotate the order every step: whoever runs right after another implementation shares the
    # cores with that one's lingering worker threads, so no implementation always pays for it.
    order = impls[i % len(impls) :] + impls[: i % len(impls)]
    for impl in order:
      step, _ = runners[impl]
      start = time.perf_counter()
      step(batch)
      if i >= args.warmup:
        times[impl].append(time.perf_counter() - start)
  peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  for impl, (_, device_peak) in runners.items():
    record = {
      "impl": impl,
      "rows": args.rows,
      "ms_per_step": 1e3 * float(np.median(times[impl])),
      "peak_rss_gb": peak_kb / 2**20 if len(impls) == 1 else None,
      "peak_device_gb": device_peak(),
      "steps": len(times[impl]),
      "load": os.getloadavg()[0],
      "interleaved": len(impls) > 1,
    }
    print(json.dumps(record))


def run_child(size: int, impls: list[str], args) -> list[dict]:
  command = [sys.executable, __file__, "--rows", str(size), "--child_impls", ",".join(impls)]
  command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
  command += ["--torch_threads", str(args.torch_threads)]
  # Every child is a timing (and at 10^7 rows a > 3 GB job): one at a time on the shared lock.
  env = dict(os.environ)
  if args.omp_passive:  # OpenMP workers sleep at barriers instead of spinning (set before import)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
  proc = subprocess.run(["flock", LOCK, *command], capture_output=True, text=True, env=env)
  if proc.returncode:
    print(f"{impls} at {size:,} rows failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return []
  records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
  for record in records:
    print(json.dumps(record), file=sys.stderr, flush=True)
  return records


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1e4,1e5,1e6,1e7")
  parser.add_argument("--impls", default=",".join(IMPLS))
  parser.add_argument("--steps", type=int, default=20)
  # Interleaved in one process, both runtimes run slow for the first ~10 s (thread pools settling;
  # PyTorch's first steps up to 10x): warm up past that.
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--interleave", default="jax_adagrad,jax_lazy_adam,torch_sparse",
                      help="impls also timed together in one process per size (ratios)")  # fmt: skip
  parser.add_argument("--torch_threads", type=int, default=0, help="0: all cores")
  parser.add_argument("--omp_passive", action="store_true",
                      help="OMP_WAIT_POLICY=PASSIVE for the children: PyTorch's spinning workers "
                      "otherwise take cycles from the other runtime in an interleaved process")  # fmt: skip
  parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)  # child mode
  parser.add_argument("--child_impls", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child_impls:
    args.impls = args.child_impls
    return child(args)
  impls = [i for i in args.impls.split(",") if i]  # --impls "": interleaved runs only
  alone, together = [], []
  for size in (int(float(s)) for s in args.sizes.split(",")):
    for impl in impls:
      alone += run_child(size, [impl], args)
    if args.interleave:
      together += run_child(size, args.interleave.split(","), args)
  print(f"\nDeepFM, d={DIM}, batch {BATCH}, big field + {len(SMALL_VOCABS)} small, Zipf ids, "
        f"{os.cpu_count()} CPUs\n")  # fmt: skip
  print("Each implementation alone in its process: ms/step (peak GB: host RSS on CPU, device")
  print("peak on an accelerator)\n")
  print_table(alone, impls, lambda r: f"{r['ms_per_step']:,.1f} ({_gb(r):.2f})")
  if together:
    names = args.interleave.split(",")
    print(f"\nInterleaved step by step in one process per size: ms/step (x = vs {names[-1]})\n")
    base = {r["rows"]: r["ms_per_step"] for r in together if r["impl"] == names[-1]}
    print_table(together, names,
                lambda r: f"{r['ms_per_step']:,.1f} ({base[r['rows']] / r['ms_per_step']:.2f}x)")  # fmt: skip


def _gb(record) -> float:
  return record["peak_device_gb"] or record["peak_rss_gb"]


def print_table(records, impls, cell) -> None:
  impls = [i for i in impls if any(r["impl"] == i for r in records)]
  print("| rows | " + " | ".join(impls) + " | load |")
  print("|---" * (len(impls) + 2) + "|")
  for size in sorted({r["rows"] for r in records}):
    row = {r["impl"]: r for r in records if r["rows"] == size}
    cells = [cell(row[i]) if i in row else "–" for i in impls]
    load = max(r["load"] for r in row.values())
    print(f"| {size:,} | " + " | ".join(cells) + f" | {load:.1f} |")


if __name__ == "__main__":
  main()
