"""Where a row-sparse train step's time goes: the step taken apart, at two vocabulary sizes.

Same model and batches as `bench/vocab_scaling.py` (DeepFM, MLP [300]*3, d=40, batch 4096, one
big field of V rows + five small ones, Zipf ids). Each part is its own jitted program on the same
state and batches; the parts run interleaved batch by batch (median ms over ``--steps`` after
``--warmup``):

* ``step``: the library's train step (`steps.make_train_step`, state donated);
* ``unique``: ``jnp.unique(size=batch)`` of the big column (the sort);
* ``gather``: unique + the row gather of every sparse array (`sparse.gather_rows`);
* ``forward``: gather + the model's loss;
* ``forward_backward``: gather + loss + gradients (dense and touched rows), no optimizer;
* ``dense_adam``: clip + Optax Adam on the dense parameters (given gradients);
* ``row_update``: the row-wise optimizer on the touched rows (`sparse.apply_row_updates`,
  sparse state donated).

  python bench/sparse_step_profile.py [--sizes 1e4,1e7] [--optimizer rowwise_adagrad]
  python bench/sparse_step_profile.py --table_costs --sizes 1e3,1e4,1e5,1e6  # (run under the lock)

Also reports whether the compiled step aliases every sparse array to its output (donation
applied: no copy of a table per step) and how many table-sized copies its optimized HLO has.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np
import vocab_scaling

LOCK = "/tmp/mec_heavy.lock"


def parts(rows: int, optimizer: str):
  """``{name: callable(batch)}`` of the step and its parts (each blocks until done)."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from mec_jax import mesh as meshes
  from mec_jax.train import optimizer as optim
  from mec_jax.train import sparse, steps

  model = vocab_scaling.jax_model(rows)
  mesh = meshes.data_mesh()
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  fields = sparse.find_sparse_fields(model, min_rows=rows, rate_of_path=lambda _: 1e-3)
  del model
  tx = optim.make_optimizer(1e-3)
  holder = {}
  holder["state"], shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer=optimizer
  )
  del params
  train_step = steps.make_train_step(
    graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(0), sparse_fields=fields,
    sparse_optimizer=optimizer, grad_clip_norm=10.0, state_sharding=shardings,
  )  # fmt: skip

  def loss_of(params, blocks, state, batch):
    params = sparse.merge_tables(params, blocks, fields)
    model = nnx.merge(graphdef, params, rng_state, state.other, copy=True)
    logits = model(batch["ids"], batch["values"])
    return steps.bce_with_logits(logits, batch["label"])

  def gathered(state, batch):
    uniqs, ids, blocks = sparse.gather_rows(sparse.tables_of(state.sparse), batch["ids"], fields)
    return uniqs, {**batch, "ids": ids}, blocks

  @jax.jit
  def unique(state, batch):
    column = batch["ids"][:, fields[0].field]
    return jnp.unique(column, size=column.shape[0], fill_value=rows, return_inverse=True)

  @jax.jit
  def gather(state, batch):
    return gathered(state, batch)

  @jax.jit
  def forward(state, batch):
    _, batch, blocks = gathered(state, batch)
    return loss_of(state.params, blocks, state, batch)

  @jax.jit
  def forward_backward(state, batch):
    uniqs, batch, blocks = gathered(state, batch)
    return uniqs, jax.grad(loss_of, argnums=(0, 1))(state.params, blocks, state, batch)

  @jax.jit
  def dense_adam(state, grads):
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, updates), opt_state

  @jax.jit
  def row_update_fn(sparse_state, uniqs, block_grads, scale):
    return sparse.apply_row_updates(sparse_state, uniqs, block_grads, fields, optimizer, scale)

  row_update_donated = jax.jit(row_update_fn, donate_argnums=0)

  def run(fn):
    def call(batch):
      jax.block_until_ready(fn(holder["state"], meshes.shard_batch(batch, mesh)))

    return call

  def full(batch):
    holder["state"], loss = train_step(holder["state"], meshes.shard_batch(batch, mesh))
    float(loss)

  def dense_opt(batch):
    jax.block_until_ready(dense_adam(holder["state"], holder["state"].params))

  def row_update(batch):
    uniqs, (_, block_grads) = forward_backward(holder["state"], meshes.shard_batch(batch, mesh))
    jax.block_until_ready(block_grads)
    scale = optim.lr_scale_array(holder["state"].opt_state)
    start = time.perf_counter()
    new = row_update_donated(holder["state"].sparse, uniqs, block_grads, scale)
    jax.block_until_ready(new)
    holder["state"] = holder["state"].replace(sparse=new)
    return time.perf_counter() - start

  probe = meshes.shard_batch(vocab_scaling.make_batches(rows, 1, seed=99)[0], mesh)
  report = donation_report(train_step, holder["state"], probe, rows)
  named = {
    "step": full,
    "unique": run(unique),
    "gather": run(gather),
    "forward": run(forward),
    "forward_backward": run(forward_backward),
    "dense_adam": dense_opt,
    "row_update": row_update,
  }
  return named, report


def donation_report(train_step, state, batch, rows: int) -> str:
  """Aliased sparse outputs and table-sized copies in the compiled step's optimized HLO."""
  compiled = train_step.lower(state, batch).compile()
  text = compiled.as_text()
  big = rf"f32\[{rows},{vocab_scaling.DIM}\]"
  copies = len(re.findall(rf"= {big}[^\n]*\bcopy\(", text))
  aliases = text.count("may-alias") + text.count("must-alias")
  memory = compiled.memory_analysis()
  temp = getattr(memory, "temp_size_in_bytes", None)
  alias = getattr(memory, "alias_size_in_bytes", None)
  return (
    f"input/output aliases: {aliases}; table-sized copy ops: {copies}; temp buffers "
    f"{(temp or 0) / 2**20:.1f} MiB; aliased {(alias or 0) / 2**20:.1f} MiB"
  )


def child(rows: int, optimizer: str, steps: int, warmup: int, only: str) -> None:
  named, report = parts(rows, optimizer)
  print(f"rows={rows:,} optimizer={optimizer}: {report}")
  names = [n for n in named if not only or n in only.split(",")]
  times = {name: [] for name in names}
  # Parts interleaved batch by batch in a rotating order, so a load change hits them alike.
  for i, batch in enumerate(vocab_scaling.make_batches(rows, steps + warmup)):
    for name in names[i % len(names) :] + names[: i % len(names)]:
      start = time.perf_counter()
      inner = named[name](batch)
      elapsed = inner if isinstance(inner, float) else time.perf_counter() - start
      if i >= warmup:
        times[name].append(1e3 * elapsed)
  for name in names:
    print(f"  {name:<17} {np.median(times[name]):7.1f} ms (min {min(times[name]):6.1f})")
  print(f"  load average {os.getloadavg()[0]:.1f}", flush=True)


def table_costs(sizes, reps: int) -> None:
  """Per-table marginal cost of a step, dense (Optax Adam) vs row-sparse, at each V.

  Only the table's own work, on donated buffers, with the step's shapes (batch 4096, d=40, Zipf
  ids): dense = scatter-add of the batch's row gradients into a zero ``[V, d]`` gradient, its
  squared norm (the clip) and Adam on table + both moments; sparse = unique, the row gather, the
  segment-sum of the row gradients and the row-wise update (state: rowwise Adagrad or lazy
  Adam). Min and median over ``reps`` calls: short programs, so the min is the uncontended time.
  """
  import jax
  import jax.numpy as jnp
  import optax

  from mec_jax.train import row_optimizers

  dim, batch = vocab_scaling.DIM, vocab_scaling.BATCH
  adam = optax.adam(1e-3)

  def dense(table, opt_state, ids, row_grads):
    grad = jnp.zeros_like(table).at[ids].add(row_grads)
    norm = jnp.sum(jnp.square(grad))
    updates, opt_state = adam.update(grad, opt_state, table)
    return optax.apply_updates(table, updates * jnp.minimum(1.0, 10.0 / norm)), opt_state

  def sparse_step(optimizer):
    def step(arrays, state, ids, row_grads):
      uniq, inverse = jnp.unique(ids, size=batch, fill_value=arrays["embedding"].shape[0],
                                 return_inverse=True)  # fmt: skip
      rows = jnp.take(arrays["embedding"], uniq, axis=0, mode="clip")
      grads = {"embedding": jnp.zeros_like(rows).at[inverse].add(row_grads)}
      return row_optimizers.update_rows(optimizer, arrays, state, uniq, grads, 1e-3)

    return step

  print(f"per-table cost of one step (batch {batch}, d={dim}): min / median ms over {reps}")
  print("| rows | dense Adam | rowwise_adagrad | lazy_adam |\n|---|---|---|---|")
  rng = np.random.default_rng(0)
  for rows in sizes:
    ids = jnp.asarray(vocab_scaling.zipf_ids(rng, rows, batch))
    row_grads = jnp.asarray(rng.standard_normal((batch, dim), np.float32))
    table = jnp.zeros((rows, dim), jnp.float32)
    cells = [_time_donated(jax.jit(dense, donate_argnums=(0, 1)), [table, adam.init(table)],
                           ids, row_grads, reps)]  # fmt: skip
    del table
    for optimizer in ("rowwise_adagrad", "lazy_adam"):
      arrays = {"embedding": jnp.zeros((rows, dim), jnp.float32)}
      state = row_optimizers.init_row_state(optimizer, arrays)
      fn = jax.jit(sparse_step(optimizer), donate_argnums=(0, 1))
      cells.append(_time_donated(fn, [arrays, state], ids, row_grads, reps))
      del arrays, state
    print(f"| {rows:,} | " + " | ".join(f"{lo:.2f} / {mid:.2f}" for lo, mid in cells) + " |")
  print(f"load average {os.getloadavg()[0]:.1f}", flush=True)


def _time_donated(fn, holder: list, ids, row_grads, reps: int) -> tuple[float, float]:
  """``(min, median)`` ms of ``holder[:] = fn(*holder, ids, row_grads)`` (donated state)."""
  import jax

  times = []
  for i in range(reps + 3):
    start = time.perf_counter()
    holder[0], holder[1] = fn(holder[0], holder[1], ids, row_grads)
    jax.block_until_ready(holder[0])
    if i >= 3:
      times.append(1e3 * (time.perf_counter() - start))
  holder.clear()
  return min(times), float(np.median(times))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1e4,1e7")
  parser.add_argument("--optimizer", default="rowwise_adagrad")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--only", default="", help="comma-separated parts to time")
  parser.add_argument("--table_costs", action="store_true",
                      help="time one table's own share of a step, dense vs sparse, at --sizes")  # fmt: skip
  parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)  # child mode
  args = parser.parse_args()
  if args.table_costs:
    return table_costs([int(float(v)) for v in args.sizes.split(",")], max(args.steps, 30))
  if args.rows:
    return child(args.rows, args.optimizer, args.steps, args.warmup, args.only)
  for size in (int(float(s)) for s in args.sizes.split(",")):
    command = [sys.executable, __file__, "--rows", str(size), "--optimizer", args.optimizer]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--only", args.only]
    subprocess.run(["flock", LOCK, *command], check=True)


if __name__ == "__main__":
  main()
