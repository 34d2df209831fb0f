"""Registry of dataset readers, keyed by ``config.data.name``.

Every reader module exposes:

  * ``read(data_config) -> RawData`` -- parse the downloaded files into raw splits;
  * ``CONFIG_KEYS`` -- the ``data.*`` keys ``read`` depends on (they enter the cache key);
  * ``VERSION`` -- bumped whenever the module's output changes, so old cache entries are skipped;
  * optionally ``source(data_config) -> DelimitedSource`` -- big delimited files: `load_dataset`
    then streams them into the cache (`mec_jax.data.streamed`) instead of calling ``read``.

Modules are imported lazily: choosing ``synthetic`` never imports the KuaiRand reader.
"""

from __future__ import annotations

import importlib
import types

from mec_jax.errors import ConfigError

DATASETS = {
  "criteo_x1": "mec_jax.data.datasets.criteo_x1",
  "criteo_kaggle": "mec_jax.data.datasets.criteo_kaggle",
  "avazu_x1": "mec_jax.data.datasets.avazu_x1",
  "avazu_kaggle": "mec_jax.data.datasets.avazu_kaggle",
  "kuairand": "mec_jax.data.datasets.kuairand",
  "frappe": "mec_jax.data.datasets.frappe",
  "fuxictr": "mec_jax.data.datasets.fuxictr",
  "ipinyou": "mec_jax.data.datasets.ipinyou",
  "movielens": "mec_jax.data.datasets.movielens",
  "synthetic": "mec_jax.data.datasets.synthetic",
}


def dataset_names() -> list[str]:
  return list(DATASETS)


def get_reader(name: str) -> types.ModuleType:
  """The reader module of dataset ``name``; ValueError listing the valid names otherwise."""
  if name not in DATASETS:
    raise ConfigError(f"unknown dataset data.name={name!r}; valid names are {dataset_names()}")
  return importlib.import_module(DATASETS[name])
