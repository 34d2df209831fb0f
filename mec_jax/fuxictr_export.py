"""A finished run's compressed tables, written back in FuxiCTR's id order (``data.name=fuxictr``).

Usage: ``python -m mec_jax.fuxictr_export --workdir=DIR --out=OUT``. For every field the run
compressed (``DIR/finetune/tables/<field>.npz``), ``OUT`` gets, indexed by FuxiCTR's ids of the
dataset folder the run read (``data.dir``, `mec_jax.data.datasets.fuxictr.id_maps`)::

  <field>_embedding.npy   float32 [V, d]  the decoded rows, what the compressed model embeds; row 0
                                          (FuxiCTR's __PAD__) all zeros, as nn.Embedding(V, d,
                                          padding_idx=0) keeps it: copy it into that weight
  <field>_codes.npy       uint [V, M]     (compress.method=pq) the codes of each FuxiCTR id (PAD:
                                          those of the OOV id); decoded row =
  <field>_codebooks.npy   float32 [M, K, d/M]   concat_m codebooks[m, codes[id, m]]
  <field>_first_order.npy float32 [V]     (pq, when the table has first-order weights) each id's
                                          first-order (LR) weight, PAD 0: FuxiCTR's lr_layer table
  id_order.json           {"id_order": "fuxictr", "dataset_id", "method", "fields": {...}}

``V`` is FuxiCTR's ``vocab_size`` of the field in ``feature_map.json``. FuxiCTR ids that never
occur in the train split (PAD, tokens mec_jax's ``data.min_count`` folded) get the row of
mec_jax's OOV id, as they would in mec_jax. ``id_order.json`` lets the folder be read back as
``pretrain.external_tables`` with the order recognized (`mec_jax.external.recorded_order`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import ml_collections
import numpy as np
from flax import nnx

from mec_jax import external, methods
from mec_jax.compression.table import CompressedTable
from mec_jax.data import load_dataset
from mec_jax.data.datasets import fuxictr
from mec_jax.errors import ArtifactError, ConfigError
from mec_jax.methods.base import compressed_fields
from mec_jax.workdir import Workdir

BLOCK_ROWS = 65_536  # rows decoded at a time


def decoded_rows(art, block_rows: int = BLOCK_ROWS) -> np.ndarray:
  """float32 ``[V, d]``: what the layer of artifact ``art`` embeds for every id, a block at a
  time (touches every row: ``V * d`` floats out)."""
  layer = art.to_layer(rngs=nnx.Rngs(0), first_order=False)
  blocks = [
    np.asarray(layer(np.arange(start, min(start + block_rows, art.vocab_size), dtype=np.int32)))
    for start in range(0, art.vocab_size, block_rows)
  ]
  return np.concatenate(blocks).astype(np.float32)


def _save(path: str, array: np.ndarray) -> None:
  tmp = path + ".tmp.npy"
  np.save(tmp, array)
  os.replace(tmp, path)


def read_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config ``workdir/config.json`` of the run, checked to be a FuxiCTR one."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise ArtifactError(f"{path}: not found; --workdir must be a mec_jax run's work directory")
  with open(path) as fh:
    config = ml_collections.ConfigDict(json.load(fh))
  if config.data.name != "fuxictr":
    raise ConfigError(
      f"{path}: data.name={config.data.name!r}; FuxiCTR's id order exists for data.name=fuxictr"
    )
  return config


def write_fuxictr_tables(workdir: str, out: str) -> dict:
  """Writes the compressed tables of the finished run in ``workdir`` to ``out`` in FuxiCTR's order.

  Args:
    workdir: a finished run on ``data.name=fuxictr`` (``finetune/tables/`` and ``config.json``;
      its ``data.dir`` must still hold the FuxiCTR folder, whose train split gives the id map).
    out: the directory to write (created; files are replaced atomically).

  Returns:
    The ``id_order.json`` written (fields, their FuxiCTR vocab sizes and files).

  Raises:
    ArtifactError: no finished run there, or a compressed table missing or damaged.
    ConfigError: the run is not on ``data.name=fuxictr``.
  """
  config = read_run_config(workdir)
  cache_dir = config.data.cache_dir or os.path.join(workdir, "cache")
  dataset = load_dataset(config.data, cache_dir, (os.path.abspath(workdir),))
  fm = dataset.feature_map
  maps = fuxictr.id_maps(config.data, fm, dataset.splits["train"]["ids"])
  method = methods.get(config.compress.method)
  fields = compressed_fields(config, fm)
  wd = Workdir(workdir)
  os.makedirs(out, exist_ok=True)
  record = {"id_order": "fuxictr", "dataset_id": fm.dataset, "method": method.name, "fields": {}}
  for spec in fields:
    path = wd.finetuned(spec.name)
    if not os.path.isfile(path):
      raise ArtifactError(f"{path}: not found; finish the run first (--config.stage=all)")
    art = method.load(path, spec, config.model.embed_dim)
    mapping = maps[spec.name]  # FuxiCTR id -> mec_jax id
    rows = decoded_rows(art)[mapping]
    rows[0] = 0.0  # FuxiCTR's PAD row
    files = {"embedding": f"{spec.name}_embedding.npy"}
    _save(os.path.join(out, files["embedding"]), rows)
    if isinstance(art, CompressedTable):
      files |= {"codes": f"{spec.name}_codes.npy", "codebooks": f"{spec.name}_codebooks.npy"}
      _save(os.path.join(out, files["codes"]), art.codes[mapping])
      _save(os.path.join(out, files["codebooks"]), np.asarray(art.codebooks, np.float32))
      weights = art.first_order_weights()
      if weights is not None:  # FM-family first-order (LR) weights, compressed the same way
        files["first_order"] = f"{spec.name}_first_order.npy"
        weights = weights[mapping].astype(np.float32)
        weights[0] = 0.0
        _save(os.path.join(out, files["first_order"]), weights)
    record["fields"][spec.name] = {"vocab_size": len(mapping), "pad_id": 0, "files": files}
  tmp = os.path.join(out, external.ORDER_FILE + ".tmp")
  with open(tmp, "w") as fh:
    json.dump(record, fh, indent=2)
  os.replace(tmp, os.path.join(out, external.ORDER_FILE))
  return record


def main(argv: list[str] | None = None) -> int:
  """``python -m mec_jax.fuxictr_export --workdir=DIR --out=OUT``; a failure is one line, exit 1."""
  parser = argparse.ArgumentParser(prog="python -m mec_jax.fuxictr_export", description=__doc__)
  parser.add_argument("--workdir", required=True, help="a finished run on data.name=fuxictr")
  parser.add_argument("--out", required=True, help="directory to write, FuxiCTR's id order")
  args = parser.parse_args(argv)
  try:
    record = write_fuxictr_tables(args.workdir, args.out)
  except (ValueError, OSError) as err:  # MecError is a ValueError
    print(f"mec_jax.fuxictr_export: {err}", file=sys.stderr)
    return 1
  fields = ", ".join(f"{n} [{f['vocab_size']}]" for n, f in record["fields"].items())
  print(f"{args.out}: {len(record['fields'])} field(s) in FuxiCTR's id order: {fields}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
