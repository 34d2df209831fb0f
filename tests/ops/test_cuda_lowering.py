"""The hot training programs, lowered for CUDA on this CPU, hold no contended scatter-adds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mec_jax import mesh as meshes
from mec_jax.compression import autoencoder, streaming
from mec_jax.layers import CodebookEmbed, FieldEmbedding
from mec_jax.layers.hashed import HashedEmbed
from mec_jax.layers.qr import QREmbed
from mec_jax.layers.rowwise import RowwiseQuantEmbed
from mec_jax.mesh import data_mesh
from mec_jax.models.registry import build_model
from mec_jax.ops import segment
from mec_jax.ops.lowering import contended_scatter_adds
from mec_jax.train import optimizer as optim
from mec_jax.train import sparse, steps

VOCABS = (300, 20, 7)
BATCH = 32


def cuda_text(fn, *args) -> str:
  return jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()


def deepfm_step_text(sparse_optimizer: str | None) -> str:
  embedding = FieldEmbedding.full(VOCABS, 8, rngs=nnx.Rngs(0))
  model = build_model("deepfm", embedding, rngs=nnx.Rngs(0), hidden_units=(16,))
  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  min_rows = 0 if sparse_optimizer is None else VOCABS[0]
  fields = sparse.find_sparse_fields(model, min_rows=min_rows, rate_of_path=lambda _: 1e-3)
  optimizer = sparse_optimizer or "sgd"
  tx = optim.make_optimizer(1e-3)
  mesh = meshes.data_mesh()
  state, shardings = steps.init_sharded_state(
    params, other, tx, mesh, fields=fields, sparse_optimizer=optimizer
  )
  train_step = steps.make_train_step(
    graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(0), sparse_fields=fields,
    sparse_optimizer=optimizer, grad_clip_norm=10.0, state_sharding=shardings,
  )  # fmt: skip
  rng = np.random.default_rng(0)
  ids = np.stack([rng.integers(0, v, BATCH) for v in VOCABS], 1).astype(np.int32)
  batch = {
    "ids": ids,
    "values": np.ones(ids.shape, np.float32),
    "label": np.zeros(BATCH, np.float32),
  }
  lowered = train_step.trace(state, meshes.shard_batch(batch, mesh))
  return lowered.lower(lowering_platforms=("cuda",)).as_text()


def test_counter_sees_todays_scatter_add():
  ids = jnp.zeros(8, jnp.int32)
  assert contended_scatter_adds(cuda_text(lambda x: jnp.zeros(4).at[ids].add(x), jnp.ones(8))) == 1
  plain = jax.grad(lambda t: jnp.take(t, ids, axis=0).sum())
  assert contended_scatter_adds(cuda_text(plain, jnp.ones(4))) == 1
  unique = lambda x: jnp.unique(x, size=8, fill_value=9, return_inverse=True)
  assert contended_scatter_adds(cuda_text(unique, ids)) >= 1


@pytest.mark.parametrize("sparse_optimizer", [None, "rowwise_adagrad"], ids=["dense", "sparse"])
def test_deepfm_train_step_has_no_contended_scatter_adds(sparse_optimizer):
  text = deepfm_step_text(sparse_optimizer)
  assert '"stablehlo.scatter"' in text  # the row updates / dense gradients are still scatters
  assert contended_scatter_adds(text) == 0


def test_cpu_lowering_keeps_todays_scatter_add():
  ids = jnp.zeros(8, jnp.int32)
  grad = jax.grad(lambda t: segment.take_rows(t, ids).sum())
  text = jax.jit(grad).trace(jnp.ones(4)).lower(lowering_platforms=("cpu",)).as_text()
  assert contended_scatter_adds(text) == 1


def test_baseline_and_codebook_gradients_have_no_contended_scatter_adds():
  ids = jnp.asarray(np.arange(64) % 5, jnp.int32)
  layers = {
    "codebook": CodebookEmbed(40, 4, 16, 2, rngs=nnx.Rngs(0)),
    "hashed": HashedEmbed(40, np.ones((10, 3)), first_order=np.zeros(10)),
    "qr": QREmbed(40, np.ones((10, 3)), np.ones((4, 3)), first_order=np.zeros(14)),
    "rowwise": RowwiseQuantEmbed(
      np.ones((40, 3), np.int8), np.ones(40), np.zeros(40), first_order=np.zeros(40)
    ),
  }
  for name, layer in layers.items():
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(p, graphdef=graphdef, rest=rest):
      model = nnx.merge(graphdef, p, rest)
      return jnp.sum(model(ids) ** 2) + jnp.sum(model.first_order(ids))

    assert contended_scatter_adds(cuda_text(jax.grad(loss), params)) == 0, name


def test_kmeans_chunk_sums_have_no_contended_scatter_adds():
  x = jnp.ones((64, 2, 3))
  text = cuda_text(streaming.chunk_stats, x, jnp.ones(64), jnp.zeros((2, 8, 3)))
  assert contended_scatter_adds(text) == 0


@pytest.mark.parametrize("reference", [False, True], ids=["mec", "reference"])
def test_stage_b_quantizer_training_has_no_contended_scatter_adds(reference):
  """The MEC objective trains the codebooks through ``pq.lookup``: K rows get the whole batch."""
  graphdef, params = nnx.split(autoencoder.MECQuantizer(8, 8, 2, 16, rngs=nnx.Rngs(0)))
  tx = autoencoder.make_optimizer(1e-3)
  cfg = autoencoder.LossWeights(reference=reference)
  epoch = autoencoder.make_train_epoch(graphdef, tx, cfg, data_mesh())
  args = (params, tx.init(params), jnp.ones((2, 32, 8)), jnp.ones((2, 32)), jax.random.key(0))
  text = epoch.trace(*args).lower(lowering_platforms=("cuda",)).as_text()
  assert contended_scatter_adds(text) == 0
