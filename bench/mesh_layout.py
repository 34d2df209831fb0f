"""Train-mesh layouts for row-sparse tables: ``('data',)`` vs ``('data', 'model')`` (issue 8).

Same model and batches as `bench/vocab_scaling.py` (DeepFM, MLP [300]*3, d=40, batch 4096, one
big field of V rows + five small ones, Zipf ids, row-wise Adagrad), on 8 forced host CPU devices.
Layouts (mesh shape, axes the big table's rows are split over):

* ``8 / data``: the 1-D mesh (``train.model_axis_size=1``);
* ``4x2 / model``, ``2x4 / model``, ``1x8 / model``: ``train.model_axis_size`` 2, 4, 8 (the batch
  split over ``data``, rows over ``model``, replicated across ``data``: what the library does);
* ``4x2 / data+model``, ``2x4 / data+model``: the alternative, rows split over both axes.

Per layout: per-device bytes of the train state (the shards device 0 holds), the collectives of
the compiled step's optimized HLO (count, bytes of their results, group size, and a ring estimate
of the bytes each device sends), and, for the ``--time_sizes``, the median ms/step with the
layouts interleaved step by step over ``--rounds`` rounds (a load change hits all alike). HLO and
memory come from lowering on abstract arrays, so they are exact and independent of load; 8 fake
devices on a 2-core host share its cores and memory, so the times measure compute, not an
interconnect.

  nice -n 10 python bench/mesh_layout.py [--sizes 1e6,1e7] [--time_sizes 1e6] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time

import numpy as np

LAYOUTS = (
  ("8 / data", 1, None),
  ("4x2 / model", 2, None),
  ("4x2 / data+model", 2, ("data", "model")),
  ("2x4 / model", 4, None),
  ("2x4 / data+model", 4, ("data", "model")),
  ("1x8 / model", 8, None),
)
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"f32": 4, "s32": 4, "u32": 4, "f16": 2, "bf16": 2, "pred": 1, "s8": 1, "u8": 1}


def shape_bytes(text: str) -> int:
  """Bytes of every array type (``f32[4096,40]{1,0}``) in an HLO type string."""
  total = 0
  for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", text):
    if dtype in _DTYPE_BYTES:
      total += _DTYPE_BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d]))
  return total


def group_size(line: str, num_devices: int) -> int:
  """Devices per replica group of a collective.

  Forms: ``replica_groups=mesh['axis_0'=4,'axis_1'=2] {'axis_0'}`` (groups along the named
  axes of that device mesh), ``[4,2]<=[8]`` (iota: 4 groups of 2), ``{{0,1},...}``.
  """
  if m := re.search(r"replica_groups=mesh\[([^\]]*)\][^{]*\{([^}]*)\}", line):
    sizes = dict(re.findall(r"'(\w+)'=(\d+)", m.group(1)))
    return int(np.prod([int(sizes[a]) for a in re.findall(r"'(\w+)'", m.group(2))]))
  if m := re.search(r"replica_groups=\[([\d,]+)\]<=", line):
    return int(m.group(1).split(",")[-1])
  if m := re.search(r"replica_groups=\{\{([\d,]*)\}", line):
    return len(m.group(1).split(","))
  if "source_target_pairs=" in line:
    return 2
  return num_devices  # empty replica_groups: all devices


def collectives(hlo: str, num_devices: int) -> dict[str, dict]:
  """Per collective kind: ops, result bytes, group sizes and ring-estimated bytes sent per device.

  Async pairs count once (the ``-start``); the estimate is 2(g-1)/g x bytes for an all-reduce,
  (g-1)/g x the gathered (all-gather) or input (reduce-scatter, all-to-all) bytes, and the
  bytes for a permute, over groups of g devices.
  """
  out = {kind: {"ops": 0, "bytes": 0, "sent": 0.0, "groups": {}} for kind in COLLECTIVES}
  for line in hlo.splitlines():
    m = re.search(r"=\s*(.*?)\s(" + "|".join(COLLECTIVES) + r")(-start)?\(", line)
    if not m or "-done" in line.split("=", 1)[1].split("(", 1)[0]:
      continue
    kind, result = m.group(2), m.group(1)
    operands = line[m.end() : line.find(")", m.end())]
    size = shape_bytes(result)
    if m.group(3):  # async start: result is a tuple (operand, result[, scratch])
      size = shape_bytes(operands) if kind in ("all-reduce", "collective-permute") else size
      if kind == "all-gather":
        size = shape_bytes(result) - shape_bytes(operands)
    g = group_size(line, num_devices)
    factor = {"all-reduce": 2 * (g - 1) / g, "collective-permute": 1.0}.get(kind, (g - 1) / g)
    base = size
    if kind in ("reduce-scatter", "all-to-all"):  # what each device puts in
      base = shape_bytes(operands) or size * (g if kind == "reduce-scatter" else 1)
    entry = out[kind]
    entry["ops"] += 1
    entry["bytes"] += size
    entry["sent"] += factor * base
    entry["groups"][g] = entry["groups"].get(g, 0) + size
  return out


def device0_bytes(tree, shardings) -> int:
  """Bytes of the shards of ``tree`` (shapes) that device 0 holds under ``shardings``."""
  import jax

  total = 0
  for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True):
    total += int(np.prod(s.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize
  return total


def held_bytes(state) -> int:
  """Bytes of the addressable shards of the live ``state`` on device 0 (the measured check)."""
  import jax

  device = jax.devices()[0]
  return sum(
    s.data.nbytes
    for x in jax.tree.leaves(state)
    for s in x.addressable_shards
    if s.device == device
  )


class Layout:
  """One mesh layout: its compiled step, abstract state and (when timed) a live state."""

  def __init__(self, name, model_axis_size, rows_axes, pieces, live: bool):
    import jax

    from mec_jax.train import sparse, steps

    graphdef, params, rng_state, other, fields, tx, optimizer = pieces
    self.name, self.mesh = name, steps.train_mesh(model_axis_size)
    self.fields = fields

    def build(params, other):
      split, tables = sparse.split_tables(params, fields, sparse.row_shards(self.mesh))
      return steps.init_train_state(
        split, other, tx, sparse.init_sparse_state(tables, fields, optimizer)
      )

    abstract = jax.eval_shape(build, params, other)
    self.shardings = sparse.state_shardings(abstract, self.mesh)
    if rows_axes is not None:
      rows = jax.tree.map(
        lambda x: sparse.row_sharding(self.mesh, x.ndim, rows_axes), abstract.sparse
      )
      self.shardings = self.shardings.replace(sparse=rows)
    self.step = steps.make_train_step(
      graphdef, rng_state, tx, self.mesh, dropout_key=jax.random.key(0), sparse_fields=fields,
      sparse_optimizer=optimizer, grad_clip_norm=10.0, state_sharding=self.shardings,
    )  # fmt: skip
    self.abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, self.shardings
    )
    self.state_bytes = device0_bytes(abstract, self.shardings)
    # Fresh buffers (a device_put may reuse the host model's, which the donated step deletes).
    live_state = jax.jit(build, out_shardings=self.shardings) if live else None
    self.state = live_state(params, other) if live else None
    self.times: list[float] = []

  def analyse(self, batch) -> dict:
    import jax

    from mec_jax import mesh as meshes

    sharding = meshes.batch_sharding(self.mesh)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding) for k, v in batch.items()}
    hlo = self.step.lower(self.abstract, batch).compile().as_text()
    return collectives(hlo, self.mesh.size)

  def run(self, batch) -> None:
    from mec_jax import mesh as meshes

    start = time.perf_counter()
    self.state, loss = self.step(self.state, meshes.shard_batch(batch, self.mesh))
    loss = float(loss)
    self.times.append(1e3 * (time.perf_counter() - start))
    assert np.isfinite(loss), (self.name, loss)


def pieces(rows: int, optimizer: str):
  import jax
  import vocab_scaling

  from mec_jax.train import optimizer as optim
  from mec_jax.train import sparse, steps

  model = vocab_scaling.jax_model(rows)
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  fields = sparse.find_sparse_fields(model, min_rows=rows, rate_of_path=lambda _: 1e-3)
  tx = optim.make_optimizer(1e-3)
  jax.block_until_ready(params)
  return graphdef, params, rng_state, other, fields, tx, optimizer


def measure(rows: int, timed: bool, args) -> None:
  import vocab_scaling

  parts = pieces(rows, args.optimizer)
  layouts = [Layout(n, k, axes, parts, live=timed) for n, k, axes in LAYOUTS]
  del parts
  batches = vocab_scaling.make_batches(rows, args.warmup + args.rounds * args.steps)
  print(f"\nV = {rows:,} ({args.optimizer}), batch {vocab_scaling.BATCH}, 8 CPU devices")
  header = "| layout | state MiB/device | collectives (ops: all-reduce, all-gather, other) |"
  header += " result MiB | est. MiB sent/device | result MiB by group size |"
  if timed:
    header += " ms/step (median) |"
  print(header)
  print("|---" * (header.count("|") - 1) + "|")
  if timed:
    for batch in batches[: args.warmup]:
      for layout in layouts:
        layout.run(batch)
    for layout in layouts:
      measured = held_bytes(layout.state)
      assert measured == layout.state_bytes, (layout.name, measured, layout.state_bytes)
      layout.times.clear()
    timed_batches = batches[args.warmup :]
    for r in range(args.rounds):  # rotate the order every round
      order = layouts[r % len(layouts) :] + layouts[: r % len(layouts)]
      for batch in timed_batches[r * args.steps : (r + 1) * args.steps]:
        for layout in order:
          layout.run(batch)
  for layout in layouts:
    found = layout.analyse(batches[0])
    ops = [found["all-reduce"]["ops"], found["all-gather"]["ops"]]
    ops.append(sum(found[k]["ops"] for k in COLLECTIVES[2:]))
    total = sum(e["bytes"] for e in found.values()) / 2**20
    sent = sum(e["sent"] for e in found.values()) / 2**20
    groups = {}
    for entry in found.values():
      for g, size in entry["groups"].items():
        groups[g] = groups.get(g, 0) + size
    cells = [
      layout.name,
      f"{layout.state_bytes / 2**20:,.1f}",
      f"{sum(ops)}: {ops[0]}, {ops[1]}, {ops[2]}",
      f"{total:.2f}",
      f"{sent:.2f}",
      ", ".join(f"{g}: {groups[g] / 2**20:.2f}" for g in sorted(groups)),
    ]
    if timed:
      cells.append(f"{np.median(layout.times):.1f}")
    print("| " + " | ".join(cells) + " |", flush=True)
  if args.verbose:
    for layout in layouts:
      print(layout.name, {k: v for k, v in layout.analyse(batches[0]).items() if v["ops"]})


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="1e6,1e7", help="big-field rows, HLO + memory")
  parser.add_argument("--time_sizes", default="1e6", help="of those, also timed")
  parser.add_argument("--optimizer", default="rowwise_adagrad")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=4, help="steps per layout per round")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--verbose", action="store_true")
  args = parser.parse_args()
  flags = os.environ.get("XLA_FLAGS", "")
  if "device_count" not in flags:  # before jax is imported
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=8").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax

  assert jax.device_count() == 8, jax.devices()
  print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
  timed = {int(float(s)) for s in args.time_sizes.split(",") if s}
  for size in (int(float(s)) for s in args.sizes.split(",")):
    measure(size, size in timed, args)
  print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
  main()
