"""`model_factory`: the report's shape-only backbone answers as the real one does."""

import types

import jax
import numpy as np
import pytest
from flax import nnx

from configs import smoke
from mec_jax import model_factory
from mec_jax.compression.table import CompressedTable
from mec_jax.data.schema import CATEGORICAL, FeatureMap, FieldSpec


def _dataset():
  fields = [FieldSpec("big", CATEGORICAL, 300, 299), FieldSpec("small", CATEGORICAL, 12, 11)]
  return types.SimpleNamespace(feature_map=FeatureMap("toy", fields))


@pytest.mark.parametrize("name", ["deepfm", "fibinet", "dcnv2"])
def test_abstract_model_counts_what_the_real_model_holds(name):
  config = smoke.get_config()
  config.model.embed_dim = 8
  codes = np.random.default_rng(0).integers(0, 16, (300, 2))
  compressed = {"big": CompressedTable(codes=codes, codebooks=np.zeros((2, 16, 4), np.float32))}
  real = model_factory.compressed_model(name, _dataset(), compressed, config, 0)
  abstract = model_factory.abstract_compressed_model(name, _dataset(), compressed, config)
  expected = model_factory.dense_param_count(real)
  assert expected > 0
  assert model_factory.dense_param_count(abstract) == expected
  assert abstract.uses_first_order == real.uses_first_order
  # Shapes only: no parameter of the abstract model holds a device array.
  leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
  assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
