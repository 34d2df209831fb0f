"""The toy DeepFM and Zipf splits the row-sparse training tests share (in process and in the
forced-device-count subprocess checks, which import this module from their own directory)."""

from __future__ import annotations

import numpy as np
from flax import nnx

from mec_jax.layers import FieldEmbedding
from mec_jax.models import registry


def model(vocabs):
  """DeepFM over full tables of ``vocabs`` rows (dim 4, init std 0.1), same init every call."""
  rngs = nnx.Rngs(params=0, dropout=1)
  embedding = FieldEmbedding.full(vocabs, 4, rngs=rngs, init_std=0.1)
  return registry.build_model("deepfm", embedding, rngs=rngs, hidden_units=(8,))


def splits(vocabs, rows=(640, 200, 200), exponent=1.5):
  """train/valid/test of ``rows`` Zipf(``exponent``) ids per field; the label depends on fields
  0 and 1."""
  rng = np.random.default_rng(0)
  out = {}
  for name, size in zip(("train", "valid", "test"), rows, strict=True):
    ids = np.stack([rng.zipf(exponent, size) % v for v in vocabs], axis=1).astype(np.int32)
    label = ((ids[:, 0] % 3 == 0) ^ (ids[:, 1] % 2 == 0)).astype(np.float32)
    out[name] = {"ids": ids, "values": np.ones(ids.shape, np.float32), "label": label}
  return out


def tables(m, fields=(0, 1)):
  """The embedding tables of ``fields`` as numpy arrays."""
  return [np.asarray(m.embedding.tables[f].embedding[...]) for f in fields]
