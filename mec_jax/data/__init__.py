"""Datasets: schemas, readers, encoding + cache, synthetic generator, Grain pipeline.

Public entry point::

  from mec_jax.data import load_dataset
  dataset = load_dataset(config.data, cache_dir)   # EncodedDataset
  dataset.splits["train"]["ids"]                   # int32 [N, F]
  print(dataset.summary(min_vocab=1000))
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from mec_jax.data import cache, encode, fingerprint, streamed
from mec_jax.data.encoded import EncodedDataset
from mec_jax.data.raw import RawData
from mec_jax.data.registry import dataset_names, get_reader
from mec_jax.data.schema import CATEGORICAL, NUMERIC, SPLITS, FeatureMap, FieldSpec
from mec_jax.data.values import FieldValues

__all__ = [
  "CATEGORICAL",
  "NUMERIC",
  "SPLITS",
  "EncodedDataset",
  "FeatureMap",
  "FieldSpec",
  "FieldValues",
  "RawData",
  "cache_document",
  "dataset_names",
  "encode_raw",
  "load_dataset",
]


def cache_document(data_config, exclude: tuple[str, ...] = ()) -> dict:
  """Everything that determines the encoded arrays of ``data_config`` (hashed into the cache key):
  the options, the code versions and the content of the input files (`fingerprint.content_key`;
  ``exclude``: directories under ``data.dir`` that are no input, e.g. the cache itself)."""
  reader = get_reader(data_config.name)
  options = encode.EncodeOptions.from_config(data_config)
  config = {}
  for key in reader.CONFIG_KEYS:
    value = data_config.get(key)
    if key == "dir" and value:
      value = os.path.abspath(str(value))
    config[key] = value
  return {
    "dataset": data_config.name,
    "reader_version": reader.VERSION,
    "encode_version": encode.ENCODE_VERSION,
    "encode": {"min_count": options.min_count, "numeric": options.numeric}
    | ({"num_buckets": options.num_buckets} if options.numeric == "bucketize" else {}),
    "config": config,
    "inputs": fingerprint.content_key(fingerprint.input_fingerprint(data_config, exclude)),
  }


def encode_raw(raw: RawData, data_config, release_raw: bool = False) -> EncodedDataset:
  """Encodes raw splits with the options of ``data_config`` (no cache).

  ``release_raw`` drops each raw column once encoded (``raw`` is consumed; saves memory).
  """
  options = encode.EncodeOptions.from_config(data_config)
  splits, feature_map, stats = encode.encode(raw, options, release_raw=release_raw)
  return EncodedDataset(feature_map, splits, stats)


def load_dataset(data_config, cache_dir: str, exclude: tuple[str, ...] = ()) -> EncodedDataset:
  """Reads, encodes and caches the dataset ``data_config.name``.

  Args:
    data_config: the ``config.data`` ConfigDict (see ``configs/default.py``).
    cache_dir: directory of encoded-array caches; a second call with the same options loads the
      arrays from there without parsing. ``""`` disables the cache.
    exclude: directories under ``data.dir`` that hold no input (a work directory); the cache
      key covers the content of every other file there, so an edited file is encoded again.

  Returns:
    The `EncodedDataset` (train/valid/test splits and the feature map).

  Readers of big delimited files (``criteo_*``, ``avazu_*``) declare a `DelimitedSource`; they
  are parsed in chunks and encoded straight into the cache entry (`mec_jax.data.streamed`), so no
  file is ever held in memory. The others are read into memory and encoded there.

  Raises:
    ValueError: unknown ``data.name`` (listing the valid ones), bad options, or missing or
      malformed input files (`DataError`, naming the file, line, column and value).
  """
  reader = get_reader(data_config.name)
  document = cache_document(data_config, (*exclude, cache_dir))
  directory = cache.entry_dir(cache_dir, data_config.name, document) if cache_dir else None
  if directory:
    hit = cache.load_entry(directory)
    if hit is not None:
      splits, feature_map, stats = hit
      return EncodedDataset(feature_map, splits, stats, cache_path=directory)
  if hasattr(reader, "source"):
    return _load_streamed(reader.source(data_config), data_config, document, directory)
  dataset = encode_raw(reader.read(data_config), data_config, release_raw=True)
  if directory:
    cache.save_entry(directory, document, dataset.splits, dataset.feature_map, dataset.stats)
    dataset.cache_path = directory
  return dataset


def _load_streamed(source, data_config, document, directory) -> EncodedDataset:
  """Streams ``source`` into the cache entry (or, without a cache, a temp dir read back)."""
  options = encode.EncodeOptions.from_config(data_config)
  if directory:
    cache.write_entry(directory, document, lambda tmp: streamed.encode_to(source, options, tmp))
    splits, feature_map, stats = cache.load_entry(directory)
    return EncodedDataset(feature_map, splits, stats, cache_path=directory)
  with tempfile.TemporaryDirectory(prefix="mec-stream-") as tmp:
    cache.write_entry(
      os.path.join(tmp, "entry"), document, lambda d: streamed.encode_to(source, options, d)
    )
    splits, feature_map, stats = cache.load_entry(os.path.join(tmp, "entry"))
    splits = {s: {k: _in_memory(a) for k, a in arrays.items()} for s, arrays in splits.items()}
  return EncodedDataset(feature_map, splits, stats)


def _in_memory(array):
  """A memory-mapped array (or `FieldValues` over one) copied into memory."""
  if isinstance(array, FieldValues):
    return FieldValues(np.array(array.numeric), array.columns, array.num_fields)
  return np.array(array)
