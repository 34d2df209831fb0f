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

  python bench/vocab_scaling.py [--sizes 1e4,1e5,1e6,1e7] [--impls ...] [--steps 20]

Children with >= 10^6 rows run under ``flock /tmp/mec_heavy.lock`` (10^7 needs several GB). Prints a
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


def jax_step_times(big_vocab: int, batches, optimizer: str | None, warmup: int):
  import jax
  from flax import nnx

  from mec_jax.layers import FieldEmbedding
  from mec_jax.models.registry import build_model
  from mec_jax.train import sparse, steps

  vocabs = (big_vocab, *SMALL_VOCABS)
  model = build_model(
    "deepfm", FieldEmbedding.full(vocabs, DIM, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0),
    hidden_units=HIDDEN,
  )  # fmt: skip
  mesh = steps.data_mesh()
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  min_rows = 0 if optimizer is None else big_vocab
  fields = sparse.find_sparse_fields(model, min_rows=min_rows, rate_of_path=lambda _: 1e-3)
  del model
  tx = steps.make_optimizer(1e-3, grad_clip_norm=10.0)
  state, shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer=optimizer or "sgd"
  )
  del params
  step = steps.make_train_step(
    graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(0), sparse_fields=fields,
    sparse_optimizer=optimizer or "sgd", grad_clip_norm=10.0, state_sharding=shardings,
  )  # fmt: skip
  times = []
  for i, batch in enumerate(batches):
    device_batch = steps.shard_batch(batch, mesh)
    start = time.perf_counter()
    state, loss = step(state, device_batch)
    jax.block_until_ready(loss)
    if i >= warmup:
      times.append(time.perf_counter() - start)
  assert np.isfinite(float(loss))
  return times, _device_peak_gb(jax.local_devices()[0])


def _device_peak_gb(device) -> float | None:
  """Peak bytes in use on an accelerator (None on CPU, which reports no memory stats)."""
  stats = device.memory_stats() if device.platform != "cpu" else None
  return stats["peak_bytes_in_use"] / 2**30 if stats and "peak_bytes_in_use" in stats else None


def torch_step_times(big_vocab: int, batches, sparse_big: bool, warmup: int) -> list[float]:
  import torch

  vocabs = (big_vocab, *SMALL_VOCABS)

  class TorchDeepFM(torch.nn.Module):
    def __init__(self):
      super().__init__()
      sparse = [sparse_big and f == 0 for f in range(len(vocabs))]
      self.tables = torch.nn.ModuleList(
        [torch.nn.Embedding(v, DIM, sparse=s) for v, s in zip(vocabs, sparse, strict=True)]
      )
      self.first = torch.nn.ModuleList(
        [torch.nn.Embedding(v, 1, sparse=s) for v, s in zip(vocabs, sparse, strict=True)]
      )
      for table in self.tables:
        torch.nn.init.normal_(table.weight, std=1e-4)
      for table in self.first:
        torch.nn.init.zeros_(table.weight)
      layers, width = [], len(vocabs) * DIM
      for h in HIDDEN:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
      layers.append(torch.nn.Linear(width, 1))
      self.mlp = torch.nn.Sequential(*layers)
      self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, ids):
      emb = torch.stack([t(ids[:, f]) for f, t in enumerate(self.tables)], dim=1)
      first = sum(t(ids[:, f])[:, 0] for f, t in enumerate(self.first))
      fm = 0.5 * (emb.sum(1) ** 2 - (emb**2).sum(1)).sum(1)
      return self.bias + first + fm + self.mlp(emb.flatten(1))[:, 0]

  torch.manual_seed(0)
  model = TorchDeepFM()
  sparse_params = [model.tables[0].weight, model.first[0].weight] if sparse_big else []
  dense_params = [p for p in model.parameters() if all(p is not q for q in sparse_params)]
  optimizers = [torch.optim.Adam(dense_params, lr=1e-3)]
  if sparse_params:
    optimizers.append(torch.optim.SparseAdam(sparse_params, lr=1e-3))
  loss_fn = torch.nn.BCEWithLogitsLoss()
  times = []
  for i, batch in enumerate(batches):
    ids, label = torch.from_numpy(batch["ids"]).long(), torch.from_numpy(batch["label"])
    start = time.perf_counter()
    for opt in optimizers:
      opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(ids), label)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(dense_params, 10.0)  # sparse grads: clip_grad_norm_ can't
    for opt in optimizers:
      opt.step()
    if i >= warmup:
      times.append(time.perf_counter() - start)
  return times


def child(args) -> None:
  steps = args.steps if args.rows < 10**6 or args.impl not in ("jax_dense", "torch_dense") else 4
  batches = make_batches(args.rows, steps + args.warmup)
  if args.impl.startswith("jax"):
    optimizer = {"jax_dense": None, "jax_adagrad": "rowwise_adagrad"}.get(args.impl, "lazy_adam")
    times, device_gb = jax_step_times(args.rows, batches, optimizer, args.warmup)
  else:
    times = torch_step_times(args.rows, batches, args.impl == "torch_sparse", args.warmup)
    device_gb = None
  peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  print(
    json.dumps(
      {
        "impl": args.impl,
        "rows": args.rows,
        "ms_per_step": 1e3 * float(np.median(times)),
        "peak_rss_gb": peak_kb / 2**20,
        "peak_device_gb": device_gb,
        "steps": len(times),
        "load": os.getloadavg()[0],
      }
    )
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1e4,1e5,1e6,1e7")
  parser.add_argument("--impls", default=",".join(IMPLS))
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)  # child mode
  parser.add_argument("--impl", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.impl:
    return child(args)
  results = []
  for size in (int(float(s)) for s in args.sizes.split(",")):
    for impl in args.impls.split(","):
      command = [sys.executable, __file__, "--rows", str(size), "--impl", impl]
      command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
      lock = ["flock", LOCK] if size >= 10**6 else []  # only the big ones need GBs
      proc = subprocess.run([*lock, *command], capture_output=True, text=True)
      if proc.returncode:
        print(f"{impl} at {size:,} rows failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        continue
      results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
      print(json.dumps(results[-1]), file=sys.stderr, flush=True)
  print(f"\nDeepFM, d={DIM}, batch {BATCH}, big field + {len(SMALL_VOCABS)} small, Zipf ids\n")
  impls = [i for i in args.impls.split(",") if any(r["impl"] == i for r in results)]
  print("ms/step (peak GB: host RSS on CPU, device peak on an accelerator)\n")
  print("| rows | " + " | ".join(impls) + " | load |")
  print("|---" * (len(impls) + 2) + "|")
  for size in sorted({r["rows"] for r in results}):
    row = {r["impl"]: r for r in results if r["rows"] == size}
    cells = [
      f"{row[i]['ms_per_step']:,.1f} ({row[i]['peak_device_gb'] or row[i]['peak_rss_gb']:.2f})"
      if i in row
      else "–"
      for i in impls
    ]
    load = max(r["load"] for r in row.values())
    print(f"| {size:,} | " + " | ".join(cells) + f" | {load:.1f} |")


if __name__ == "__main__":
  main()
