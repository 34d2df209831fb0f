"""Train-step throughput: mec_jax DeepFM (full, row-sparse, compressed tables) vs a PyTorch DeepFM.

Same architecture on both sides (per-field tables, first-order weights, FM term, MLP [300]*3, Adam,
global-norm clip 10), same batch, measured in the same process after warm-up. Prints a markdown
table with samples/s and the ratio to PyTorch.

  python bench/train_throughput.py [--batch_size 4096] [--steps 30] [--vocab 200000,50000,...]

PyTorch comes from the `bench` extra (`pip install -e ".[bench]"`, or the CPU wheel); without it
only the JAX rows are printed.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from flax import nnx

from mec_jax import mesh as meshes
from mec_jax.compression.table import CompressedTable
from mec_jax.layers import CodebookEmbed
from mec_jax.layers.embed import Embed
from mec_jax.layers.field_embedding import FieldEmbedding
from mec_jax.models.registry import build_model
from mec_jax.train import optimizer as optim
from mec_jax.train import sparse, steps


def make_batches(vocab_sizes, batch_size, count, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    ids = np.stack([rng.zipf(1.2, batch_size) % v for v in vocab_sizes], axis=1).astype(np.int32)
    out.append(
      {
        "ids": ids,
        "values": np.ones(ids.shape, np.float32),
        "label": (rng.random(batch_size) < 0.2).astype(np.float32),
      }
    )
  return out


def jax_samples_per_second(model, batches, warmup=3, sparse_min_rows=0):
  mesh = meshes.data_mesh()
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  fields = sparse.find_sparse_fields(model, min_rows=sparse_min_rows, rate_of_path=lambda _: 1e-3)
  tx = optim.make_optimizer(1e-3)
  state, shardings = steps.init_sharded_state(params, other, tx, mesh, fields=fields)
  step = steps.make_train_step(
    graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(0), sparse_fields=fields,
    grad_clip_norm=10.0, state_sharding=shardings,
  )  # fmt: skip
  device_batches = [meshes.shard_batch(b, mesh) for b in batches]
  for b in device_batches[:warmup]:
    state, loss = step(state, b)
  jax.block_until_ready(loss)
  start = time.perf_counter()
  for b in device_batches[warmup:]:
    state, loss = step(state, b)
  jax.block_until_ready(loss)
  elapsed = time.perf_counter() - start
  return sum(len(b["label"]) for b in batches[warmup:]) / elapsed


def torch_samples_per_second(vocab_sizes, dim, hidden, batches, warmup=3):
  import torch
  from torch_deepfm import torch_deepfm  # bench/ is on sys.path when run as a script

  torch.manual_seed(0)
  model = torch_deepfm(vocab_sizes, dim, hidden)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  loss_fn = torch.nn.BCEWithLogitsLoss()
  tensors = [(torch.from_numpy(b["ids"]).long(), torch.from_numpy(b["label"])) for b in batches]

  def step(ids, label):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(ids), label)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()

  for ids, label in tensors[:warmup]:
    step(ids, label)
  start = time.perf_counter()
  for ids, label in tensors[warmup:]:
    step(ids, label)
  elapsed = time.perf_counter() - start
  return sum(len(label) for _, label in tensors[warmup:]) / elapsed, torch.get_num_threads()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=4096)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--dim", type=int, default=40)
  parser.add_argument("--vocab", default="200000,50000,10000,2000,100,20,10,5")
  parser.add_argument("--num_subspaces", type=int, default=2)
  parser.add_argument("--codebook_size", type=int, default=256)
  parser.add_argument("--sparse_min_rows", type=int, default=100_000)
  args = parser.parse_args()
  vocab = [int(v) for v in args.vocab.split(",")]
  hidden = (300, 300, 300)
  batches = make_batches(vocab, args.batch_size, args.steps + 3)

  rows = []
  full = build_model(
    "deepfm", FieldEmbedding.full(vocab, args.dim, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0),
    hidden_units=hidden,
  )  # fmt: skip
  rows.append(("mec_jax DeepFM, full tables", jax_samples_per_second(full, batches)))
  sparse_model = build_model(
    "deepfm", FieldEmbedding.full(vocab, args.dim, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0),
    hidden_units=hidden,
  )  # fmt: skip
  rows.append(
    (
      f"mec_jax DeepFM, tables >= {args.sparse_min_rows:,} rows row-sparse (lazy Adam)",
      jax_samples_per_second(sparse_model, batches, sparse_min_rows=args.sparse_min_rows),
    )
  )

  rng = np.random.default_rng(0)
  m, k = args.num_subspaces, args.codebook_size
  tables = []
  for v in vocab:
    if v >= 1000:
      table = CompressedTable(
        codes=rng.integers(0, k, (v, m)), codebooks=rng.normal(size=(m, k, args.dim // m)) * 0.01
      )
      tables.append(CodebookEmbed.from_table(table, rngs=nnx.Rngs(0)))
    else:
      tables.append(Embed(v, args.dim, rngs=nnx.Rngs(0)))
  compressed = build_model("deepfm", FieldEmbedding(tables), rngs=nnx.Rngs(0), hidden_units=hidden)
  rows.append(
    (f"mec_jax DeepFM, CodebookEmbed (M={m}, K={k})", jax_samples_per_second(compressed, batches))
  )

  reference = None
  try:
    reference, threads = torch_samples_per_second(vocab, args.dim, hidden, batches)
    rows.append((f"PyTorch DeepFM, full tables ({threads} threads)", reference))
  except ImportError:
    print("torch not installed: PyTorch reference skipped (pip install -e '.[bench]')")

  print(f"\nbatch {args.batch_size}, {args.steps} timed steps, fields {len(vocab)}, d={args.dim}, "
        f"backend {jax.default_backend()}\n")  # fmt: skip
  print("| implementation | samples/s | vs PyTorch |")
  print("|---|---|---|")
  for name, rate in rows:
    ratio = f"{rate / reference:.2f}x" if reference else "–"
    print(f"| {name} | {rate:,.0f} | {ratio} |")


if __name__ == "__main__":
  main()
