"""The backbones the pipeline trains and evaluates: full, compressed, and stage A's weights copied in."""

from __future__ import annotations

import numpy as np
from flax import nnx

from mec_jax import methods
from mec_jax.data import EncodedDataset
from mec_jax.layers.embed import Embed
from mec_jax.layers.field_embedding import FieldEmbedding
from mec_jax.models import registry


def build_model(name: str, tables: list, config, seed: int):
  """Backbone ``name`` over the given per-field tables (full `Embed` or `CodebookEmbed`)."""
  rngs = nnx.Rngs(seed)
  embedding = FieldEmbedding(tables)
  return registry.build_model_from_config(name, embedding, config.model, rngs=rngs)


def full_model(name: str, dataset: EncodedDataset, config, seed: int):
  """Backbone ``name`` with a full float table ``[V_f, model.embed_dim]`` per field."""
  rngs = nnx.Rngs(seed)
  dim = config.model.embed_dim
  tables = [Embed(v, dim, rngs=rngs) for v in dataset.feature_map.vocab_sizes]
  return build_model(name, tables, config, seed)


def compressed_model(
  name: str, dataset: EncodedDataset, compressed: dict[str, methods.Artifact], config, seed: int
):
  """Backbone with the compressed fields as `methods.make_layer` layers, full tables elsewhere."""
  rngs = nnx.Rngs(seed)
  dim = config.model.embed_dim
  tables = []
  for spec in dataset.feature_map.fields:
    if spec.name in compressed:
      tables.append(methods.make_layer(compressed[spec.name], rngs=rngs))
    else:
      tables.append(Embed(spec.vocab_size, dim, rngs=rngs))
  return build_model(name, tables, config, seed)


def abstract_compressed_model(
  name: str, dataset: EncodedDataset, compressed: dict[str, methods.Artifact], config
):
  """`compressed_model` as shapes only (`nnx.eval_shape`): nothing allocated, whatever the vocab.

  What the report asks of the model (`uses_first_order`, `dense_param_count`) needs no values.
  """
  return nnx.eval_shape(lambda: compressed_model(name, dataset, compressed, config, 0))


def copy_matching_params(source, target) -> int:
  """Copies every parameter and batch statistic of ``source`` into ``target`` where path and shape agree.

  That is how the swap-in model (and stage C's warm start) takes stage A's dense layers, batch-norm
  running statistics and small tables while keeping the compressed tables it was built with.
  Returns how many variables were copied.
  """
  kinds = (nnx.Param, nnx.BatchStat)
  src = dict(nnx.to_flat_state(nnx.state(source, kinds)))
  dst_state = nnx.state(target, kinds)
  copied = 0
  for path, var in nnx.to_flat_state(dst_state):
    other = src.get(path)
    if other is not None and other[...].shape == var[...].shape:
      var[...] = other[...]
      copied += 1
  nnx.update(target, dst_state)
  return copied


def dense_param_count(model) -> int:
  """Float parameters outside the embedding tables (MLPs, cross layers, global bias); ``model`` may
  be abstract (`abstract_compressed_model`)."""
  total = 0
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    if "embedding" not in path:
      total += int(np.prod(var.get_value().shape))  # a ShapeDtypeStruct in an abstract model
  return total
