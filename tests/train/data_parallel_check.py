"""Run by test_data_parallel.py in a fresh process with 8 host CPU devices (not a test itself).

Checks that a train step over a mesh of 8 devices (batch sharded on 'data', state replicated)
computes the same update as over a single device (batch norm and dropout included), and that
sharded, padded evaluation gives the same metrics. Prints OK on success.
"""

import sys

import jax
import numpy as np
from flax import nnx

from mec_jax import mesh as meshes
from mec_jax.layers import FieldEmbedding
from mec_jax.models import registry
from mec_jax.train import loop, steps
from mec_jax.train import optimizer as optim

VOCABS = [30, 12, 1]


def model():
  rngs = nnx.Rngs(params=0, dropout=1)
  embedding = FieldEmbedding.full(VOCABS, 4, rngs=rngs, init_std=0.1)
  return registry.build_model(
    "deepfm", embedding, rngs=rngs, hidden_units=(16, 8), dropout=0.2, batch_norm=True
  )


def splits():
  rng = np.random.default_rng(0)
  out = {}
  for name, rows in (("train", 640), ("valid", 203), ("test", 197)):  # eval rows not /8
    ids = np.stack([rng.integers(0, v, rows) for v in VOCABS], axis=1).astype(np.int32)
    values = np.ones(ids.shape, np.float32)
    values[:, -1] = rng.normal(size=rows)
    label = ((ids[:, 0] % 3 == 0) ^ (values[:, -1] > 0.5)).astype(np.float32)
    out[name] = {"ids": ids, "values": values, "label": label}
  return out


def run_steps(mesh, batches):
  m = model()
  m.train()
  graphdef, params, rng_state, other = steps.split_model(m)
  tx = optim.make_optimizer(1e-2)
  state = jax.device_put(steps.init_train_state(params, other, tx), meshes.replicated(mesh))
  step = steps.make_train_step(graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(3))
  losses = []
  for batch in batches:
    state, loss = step(state, meshes.shard_batch(batch, mesh))
    losses.append(float(loss))
  return jax.device_get(state), losses


def main():
  assert jax.device_count() == 8, jax.devices()
  one, eight = meshes.data_mesh(jax.devices()[:1]), meshes.data_mesh()
  data = splits()
  train = data["train"]
  batches = [{k: v[i * 160 : (i + 1) * 160] for k, v in train.items()} for i in range(3)]
  state1, losses1 = run_steps(one, batches)
  state8, losses8 = run_steps(eight, batches)
  np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    state8.params,
    state1.params,
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    state8.other,
    state1.other,
  )

  m = model()
  eval1 = loop.evaluate_splits(m, data, ("valid", "test"), mesh=one)
  eval8 = loop.evaluate_splits(m, data, ("valid", "test"), mesh=eight)
  for key in eval1:
    np.testing.assert_allclose(eval8[key], eval1[key], rtol=1e-5)

  print("OK")


if __name__ == "__main__":
  sys.exit(main())
