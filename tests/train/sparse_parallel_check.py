"""Run by test_sparse_parallel.py in a fresh process with 8 host CPU devices (not a test itself).

Row-sparse tables row-sharded over 8 devices give the same train steps (lazy Adam) and the same
eval probabilities as on one device; each device holds 1/8 of every sparse table; and neither
compiled step gathers a table-sized array (no all-gather / all-to-all with a dimension as large
as the table). Prints OK on success.
"""

import re
import sys

import jax
import numpy as np
from flax import nnx

from mec_jax import mesh as meshes
from mec_jax.layers import FieldEmbedding
from mec_jax.models import registry
from mec_jax.train import optimizer as optim
from mec_jax.train import sparse, steps

VOCABS = [1000, 13, 1]  # field 0: 125 rows a device; field 1: padded to 16
BATCH = 160


def model():
  rngs = nnx.Rngs(params=0, dropout=1)
  embedding = FieldEmbedding.full(VOCABS, 4, rngs=rngs, init_std=0.1)
  return registry.build_model("deepfm", embedding, rngs=rngs, hidden_units=(16, 8), dropout=0.2)


def batches(count):
  rng = np.random.default_rng(0)
  out = []
  for _ in range(count):
    ids = np.stack([rng.zipf(1.3, BATCH) % v for v in VOCABS], axis=1).astype(np.int32)
    values = np.ones(ids.shape, np.float32)
    label = (ids[:, 0] % 3 == 0).astype(np.float32)
    out.append({"ids": ids, "values": values, "label": label})
  return out


def big_collectives(hlo: str, rows: int) -> list[str]:
  """Collective ops of ``hlo`` whose result has a dimension of at least ``rows``."""
  found = []
  for line in hlo.splitlines():
    if not re.search(r"\b(all-gather|all-to-all|collective-permute)(-start)?\(", line):
      continue
    result = line.split("=", 1)[1].split("(", 1)[0]
    dims = [int(d) for shape in re.findall(r"\[([\d,]*)\]", result) for d in shape.split(",") if d]
    if any(d >= rows for d in dims):
      found.append(line.strip()[:200])
  return found


def run(mesh, data):
  m = model()
  m.train()
  graphdef, params, rng_state, other = steps.split_model(m)
  fields = sparse.find_sparse_fields(m, min_rows=13, rate_of_path=lambda _: 0.05)
  tx = optim.make_optimizer(1e-2)
  state, shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer="lazy_adam"
  )
  step = steps.make_train_step(
    graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(3), sparse_fields=fields,
    sparse_optimizer="lazy_adam", grad_clip_norm=1.0, state_sharding=shardings,
  )  # fmt: skip
  sharded = [meshes.shard_batch(b, mesh) for b in data]
  train_hlo = step.lower(state, sharded[0]).compile().as_text()
  losses = []
  for batch in sharded:
    state, loss = step(state, batch)
    losses.append(float(loss))
  m.eval()
  eval_step = steps.make_eval_step(nnx.graphdef(m), rng_state, mesh, sparse_fields=fields)
  full = sparse.merge_tables(state.params, sparse.tables_of(state.sparse), fields)
  probs = np.asarray(eval_step(full, state.other, sharded[0])[0])
  eval_hlo = eval_step.lower(full, state.other, sharded[0]).compile().as_text()
  tables = sparse.model_tables(sparse.tables_of(state.sparse), fields)
  return state, jax.device_get(tables), losses, probs, (train_hlo, eval_hlo)


def main():
  assert jax.device_count() == 8, jax.devices()
  data = batches(3)
  state1, tables1, losses1, probs1, _ = run(meshes.data_mesh(jax.devices()[:1]), data)
  state8, tables8, losses8, probs8, hlos = run(meshes.data_mesh(), data)

  np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
  np.testing.assert_allclose(probs8, probs1, rtol=1e-5, atol=1e-7)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  jax.tree.map(close, jax.device_get(state8.params), jax.device_get(state1.params))
  jax.tree.map(close, tables8, tables1)
  for name in ("field_0", "field_1"):
    counts8 = np.asarray(state8.sparse[name]["opt"]["count"])[
      : len(state1.sparse[name]["opt"]["count"])
    ]
    np.testing.assert_array_equal(counts8, np.asarray(state1.sparse[name]["opt"]["count"]))

  table = state8.sparse["field_0"]["tables"]["embedding"]
  assert table.sharding.spec == jax.sharding.PartitionSpec("data", None), table.sharding
  assert {s.data.shape for s in table.addressable_shards} == {(125, 4)}
  assert state8.sparse["field_1"]["tables"]["bias"].shape == (16,)  # padded to 8 devices
  mlp = jax.tree.leaves(state8.params)[0]
  assert mlp.sharding.is_fully_replicated
  for hlo in hlos:
    assert "all-gather" in hlo or "all-reduce" in hlo  # the partitioner did insert collectives
    big = big_collectives(hlo, VOCABS[0] // 2)
    assert not big, "table-sized collectives:\n" + "\n".join(big)
  print("OK")


if __name__ == "__main__":
  sys.exit(main())
