"""Every backbone builds from the registry / config, gives finite [B] logits and learns."""

import itertools

import jax
import numpy as np
import pytest
from flax import nnx

from configs import default
from mec_jax import mesh as meshes
from mec_jax.layers import CodebookEmbed, Embed, FieldEmbedding
from mec_jax.models import registry
from mec_jax.train import optimizer as optim
from mec_jax.train import steps

VOCABS = [30, 20, 10, 1]  # the last field is numeric
DIM = 4
SMALL = dict(hidden_units=(8, 8))
HPARAMS = {  # dropout and batch norm only where they are wired differently (fewer compiles)
  "lr": {},
  "fm": {},
  "deepfm": SMALL | dict(dropout=0.1, batch_norm=True),
  "widedeep": SMALL,
  "dcnv2": SMALL | dict(num_cross_layers=2),
  "pnn": SMALL,
  "gdcn": SMALL | dict(num_cross_layers=2),
  "fibinet": SMALL,
  "autoint": dict(
    hidden_units=(8,), num_heads=2, num_attention_layers=2, attention_dim=8, dropout=0.1
  ),
  "finalmlp": dict(hidden_units=(8, 8), fs_hidden_units=(8,), batch_norm=True),
}


def _problem(rows=256, seed=0):
  """Random ids with a planted click model, so a few steps must lower the loss."""
  rng = np.random.default_rng(seed)
  ids = np.stack([rng.integers(0, v, rows) for v in VOCABS], axis=1).astype(np.int32)
  values = np.ones(ids.shape, np.float32)
  values[:, -1] = rng.normal(size=rows)
  weights = [rng.normal(size=v) for v in VOCABS]
  logit = sum(weights[f][ids[:, f]] for f in range(3)) + 2 * values[:, -1] * weights[3][0]
  label = (rng.random(rows) < 1 / (1 + np.exp(-2 * logit))).astype(np.float32)
  return {"ids": ids, "values": values, "label": label}


def _model(name, **hparams):
  rngs = nnx.Rngs(params=0, dropout=1)
  embedding = FieldEmbedding.full(VOCABS, DIM, rngs=rngs, init_std=0.1)
  return registry.build_model(name, embedding, rngs=rngs, **hparams)


def test_model_names_match_config_comment():
  assert set(registry.MODEL_NAMES) == {
    "lr", "fm", "deepfm", "widedeep", "dcnv2", "pnn", "gdcn", "fibinet", "autoint", "finalmlp"
  }  # fmt: skip
  assert set(HPARAMS) == set(registry.MODEL_NAMES)


@pytest.mark.parametrize("name", registry.MODEL_NAMES)
def test_backbone_logits_and_training(name):
  model = _model(name, **HPARAMS[name])
  batch = _problem()
  logits = nnx.eval_shape(lambda m: m(batch["ids"], batch["values"]), model)  # no compile
  assert logits.shape == (256,) and logits.dtype == np.float32

  model.train()
  graphdef, params, rng_state, other = steps.split_model(model)
  tx = optim.make_optimizer(3e-2)
  mesh = meshes.data_mesh(jax.devices()[:1])
  state = jax.device_put(steps.init_train_state(params, other, tx), meshes.replicated(mesh))
  step = steps.make_train_step(graphdef, rng_state, tx, mesh, dropout_key=jax.random.key(0))
  losses = []
  for _ in range(10):
    state, loss = step(state, meshes.shard_batch(batch, mesh))
    losses.append(float(loss))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < losses[0] - 0.02, losses


def test_fm_logit_equals_brute_force():
  model = _model("fm")
  for table in model.embedding.tables:
    table.bias[...] = jax.random.normal(jax.random.key(3), table.bias.shape)
  model.bias[...] = 0.7
  batch = _problem(rows=5)
  tables = model.embedding.tables_as_numpy()
  ids, values = batch["ids"], batch["values"]
  emb = [tables[f][0][ids[:, f]] * values[:, f, None] for f in range(4)]
  expected = 0.7 + sum(tables[f][1][ids[:, f]] * values[:, f] for f in range(4))
  expected = expected + sum(
    np.sum(emb[i] * emb[j], -1) for i, j in itertools.combinations(range(4), 2)
  )
  np.testing.assert_allclose(model(ids, values), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "name, extra",
  [
    ("dcnv2", dict(structure="stacked")),
    ("dcnv2", dict(low_rank=2, num_experts=3)),
    ("gdcn", dict(structure="stacked")),
    ("fibinet", dict(bilinear_type="field_each")),
    ("autoint", dict(hidden_units=(), use_wide=True, layer_norm=True)),
  ],
)
def test_variants_build_and_run(name, extra):
  hparams = {k: v for k, v in HPARAMS[name].items() if k not in extra} | extra
  model = _model(name, **hparams)
  batch = _problem(rows=16)
  assert np.all(np.isfinite(model(batch["ids"], batch["values"])))


def test_backbone_accepts_compressed_tables():
  rngs = nnx.Rngs(0)
  tables = [CodebookEmbed(30, 2, 4, DIM // 2, rngs=rngs)] + [
    Embed(v, DIM, rngs=rngs) for v in VOCABS[1:]
  ]
  model = registry.build_model("pnn", FieldEmbedding(tables), rngs=rngs, hidden_units=(8,))
  batch = _problem(rows=8)
  assert model(batch["ids"], batch["values"]).shape == (8,)


def test_build_from_config_passes_only_accepted_keys():
  config = default.get_config()
  config.model.hidden_units = (16, 8)
  config.model.dropout = 0.3
  config.model.structure = "stacked"
  config.model.num_heads = 4
  assert registry.hparams_from_config("lr", config.model) == {}
  assert registry.hparams_from_config("gdcn", config.model) == {
    "hidden_units": (16, 8),
    "dropout": 0.3,
    "batch_norm": False,
    "num_cross_layers": 3,
    "structure": "stacked",
  }
  assert registry.hparams_from_config("autoint", config.model)["num_heads"] == 4
  model = registry.build_model_from_config(
    "dcnv2", _model("lr").embedding, config.model, rngs=nnx.Rngs(0)
  )
  assert model.structure == "stacked"
  assert [b.linear.out_features for b in model.mlp.blocks] == [16, 8]


def test_empty_hidden_units_means_backbone_default():
  config = default.get_config()
  assert config.model.hidden_units == ()
  assert "hidden_units" not in registry.hparams_from_config("deepfm", config.model)
  model = registry.build_model_from_config(
    "deepfm", _model("lr").embedding, config.model, rngs=nnx.Rngs(0)
  )
  assert [b.linear.out_features for b in model.mlp.blocks] == [300, 300, 300]


def test_registry_errors():
  embedding = _model("lr").embedding
  with pytest.raises(ValueError, match="unknown model 'xdeepfm'"):
    registry.build_model("xdeepfm", embedding, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="does not take \\['num_heads'\\]"):
    registry.build_model("deepfm", embedding, rngs=nnx.Rngs(0), num_heads=2)
  with pytest.raises(ValueError, match="structure must be one of"):
    registry.build_model("dcnv2", embedding, rngs=nnx.Rngs(0), structure="crossnet_only")
  with pytest.raises(ValueError, match="must implement FieldEmbedder"):
    registry.build_model("fm", np.zeros((3, 4)), rngs=nnx.Rngs(0))
