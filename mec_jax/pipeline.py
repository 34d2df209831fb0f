"""Stages A -> B -> C -> report over one work directory (DESIGN §1, §3, §7).

Layout of ``workdir``::

  config.json                  the resolved config of the last run
  stages.json                  per stage, the settings its artifacts were computed with
  cache/                       encoded dataset (unless data.cache_dir says otherwise)
  pretrain/  finetune/         checkpoints, metrics.jsonl, result of `train.fit`
  pretrain/tables/<field>.npz  stage-A output: embedding [V, d], bias [V] (if any), counts [V]
  quantize/<field>.npz         stage-B output: one `CompressedTable` per compressed field
  swap/result.json             stage-A weights with compressed tables, evaluated without training
  report.json  report.md  code_usage.png  auc_vs_bytes.png

Every artifact is written atomically, and a stage whose artifact exists is not run again.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import logging
from flax import nnx

from mec_jax import report as report_lib
from mec_jax import workdir_config
from mec_jax.compression import quantizer
from mec_jax.compression.table import CompressedTable
from mec_jax.data import EncodedDataset, load_dataset
from mec_jax.layers import CodebookEmbed
from mec_jax.layers.embed import Embed
from mec_jax.layers.field_embedding import FieldEmbedding
from mec_jax.memory import field_memories, memory_report
from mec_jax.models import registry
from mec_jax.train import loop

STAGES = ("all", "pretrain", "quantize", "finetune", "report")
VARIANTS = ("mec", "reference", "no_pwr", "no_contrastive", "no_balance", "kmeans")
FIRST_ORDER_MODELS = ("lr", "fm", "deepfm", "widedeep")


def validate_config(config) -> None:
  """Checks the keys users set most often; raises ValueError naming the key and the choices."""
  if config.stage not in STAGES:
    raise ValueError(f"config.stage={config.stage!r}; expected one of {STAGES}")
  for key in ("model.name", "pretrain.model"):
    name = config.model.name if key == "model.name" else config.pretrain.model
    if name not in registry.MODEL_NAMES:
      raise ValueError(f"config.{key}={name!r}; expected one of {sorted(registry.MODEL_NAMES)}")
  q = config.quantize
  if q.variant not in VARIANTS:
    raise ValueError(f"config.quantize.variant={q.variant!r}; expected one of {VARIANTS}")
  dim = config.model.embed_dim
  if dim < 1:
    raise ValueError(f"config.model.embed_dim={dim}; expected a positive integer")
  if q.num_subspaces < 1 or dim % q.num_subspaces:
    raise ValueError(
      f"config.quantize.num_subspaces={q.num_subspaces} must divide config.model.embed_dim={dim}"
    )
  if q.codebook_size < 2:
    raise ValueError(f"config.quantize.codebook_size={q.codebook_size}; expected >= 2")
  quantizer.QuantizeSettings.from_config(q)  # stage B's own checks, before stage A runs
  if config.train.batch_size < 1 or config.train.epochs < 1:
    raise ValueError(
      f"config.train.batch_size={config.train.batch_size}, config.train.epochs="
      f"{config.train.epochs}; both must be >= 1"
    )


class Workdir:
  """Paths of the artifacts of one run."""

  def __init__(self, root: str):
    self.root = os.path.abspath(root)
    self.tables = os.path.join(self.root, "pretrain", "tables")
    self.quantize = os.path.join(self.root, "quantize")
    self.swap = os.path.join(self.root, "swap", "result.json")
    self.report = os.path.join(self.root, "report.json")
    self.timings = os.path.join(self.root, "timings.json")
    for path in (self.root, self.tables, self.quantize, os.path.dirname(self.swap)):
      os.makedirs(path, exist_ok=True)

  def table(self, field: str) -> str:
    return os.path.join(self.tables, f"{_safe(field)}.npz")

  def compressed(self, field: str) -> str:
    return os.path.join(self.quantize, f"{_safe(field)}.npz")


def _safe(name: str) -> str:
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# --- model construction ---------------------------------------------------------------------------


def build_model(name: str, tables: list, config, seed: int):
  """Backbone ``name`` over the given per-field tables (full `Embed` or `CodebookEmbed`)."""
  rngs = nnx.Rngs(seed)
  embedding = FieldEmbedding(tables)
  return registry.build_model_from_config(name, embedding, config.model, rngs=rngs)


def full_model(name: str, dataset: EncodedDataset, config, seed: int):
  rngs = nnx.Rngs(seed)
  dim = config.model.embed_dim
  tables = [Embed(v, dim, rngs=rngs) for v in dataset.feature_map.vocab_sizes]
  return build_model(name, tables, config, seed)


def compressed_model(
  name: str, dataset: EncodedDataset, compressed: dict[str, CompressedTable], config, seed: int
):
  """Backbone with `CodebookEmbed` for the compressed fields and fresh full tables elsewhere."""
  rngs = nnx.Rngs(seed)
  dim = config.model.embed_dim
  tables = []
  for spec in dataset.feature_map.fields:
    if spec.name in compressed:
      tables.append(CodebookEmbed.from_table(compressed[spec.name], rngs=rngs))
    else:
      tables.append(Embed(spec.vocab_size, dim, rngs=rngs))
  return build_model(name, tables, config, seed)


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
  """Float parameters outside the embedding tables (MLPs, cross layers, global bias)."""
  total = 0
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    if "embedding" not in path:
      total += int(np.prod(var[...].shape))
  return total


# --- stages ---------------------------------------------------------------------------------------


def _fit(model, dataset: EncodedDataset, config, workdir: str, name: str, **kwargs):
  return loop.fit(
    model,
    dataset.splits,
    train_config=loop.TrainConfig.from_config(config),  # reads model.embedding_regularizer too
    workdir=workdir,
    name=name,
    **kwargs,
  )


def run_pretrain(config, dataset: EncodedDataset, wd: Workdir):
  """Stage A: train the full model, then save its tables and the train counts."""
  model = full_model(config.pretrain.model, dataset, config, config.train.seed)
  result = _fit(model, dataset, config, wd.root, "pretrain")
  for spec, table in zip(dataset.feature_map.fields, model.embedding.tables, strict=True):
    path = wd.table(spec.name)
    if spec.is_categorical and not os.path.exists(path):
      embedding, bias = table.as_numpy()
      arrays = {"embedding": embedding} | ({"bias": bias} if bias is not None else {})
      if spec.counts is not None:
        arrays["counts"] = spec.counts
      tmp = path + ".tmp.npz"
      np.savez(tmp, **arrays)
      os.replace(tmp, path)
  return model, result


def run_quantize(config, dataset: EncodedDataset, wd: Workdir) -> dict[str, CompressedTable]:
  """Stage B: one `CompressedTable` per field with vocab >= quantize.min_vocab."""
  settings = quantizer.QuantizeSettings.from_config(config.quantize)
  fm = dataset.feature_map
  out = {}
  for index in fm.fields_to_compress(config.quantize.min_vocab):
    spec = fm.fields[index]
    path = wd.compressed(spec.name)
    if os.path.exists(path):
      out[spec.name] = CompressedTable.load(path)
      continue
    source = wd.table(spec.name)
    if not os.path.exists(source):
      raise ValueError(f"{source}: stage A's table of field {spec.name!r} is missing; run pretrain")
    with np.load(source) as arrays:
      table = arrays["embedding"]
      bias = arrays["bias"] if "bias" in arrays else None
    counts = spec.counts if spec.counts is not None else np.ones(spec.vocab_size, np.int64)
    logging.info("quantize: field %s, vocab %d", spec.name, spec.vocab_size)
    start = time.time()
    key = jax.random.fold_in(jax.random.key(config.quantize.seed), index)
    compressed = quantizer.quantize_table(
      key,
      table,
      counts,
      settings,
      bias=bias,
      progress=_progress(config, spec.name, settings),
      name=spec.name,
    )
    compressed.name = spec.name
    compressed.stats["seconds"] = time.time() - start
    compressed.save(path)
    out[spec.name] = compressed
  return out


def _progress(config, field: str, settings):
  if not config.train.progress:
    return None
  from tqdm.auto import tqdm

  bar = tqdm(total=settings.epochs, desc=f"quantize {field}", leave=False)

  def update(epoch, metrics):
    bar.update(1)
    bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, float)})
    if epoch + 1 >= settings.epochs:
      bar.close()

  return update


def load_compressed(config, dataset: EncodedDataset, wd: Workdir) -> dict[str, CompressedTable]:
  out = {}
  for index in dataset.feature_map.fields_to_compress(config.quantize.min_vocab):
    name = dataset.feature_map.fields[index].name
    if not os.path.exists(wd.compressed(name)):
      raise ValueError(f"{wd.compressed(name)} is missing; run --config.stage=quantize first")
    out[name] = CompressedTable.load(wd.compressed(name))
  return out


def run_swap(config, dataset, wd: Workdir, pretrained, compressed) -> dict | None:
  """Stage-A weights with compressed tables, no training (DESIGN §3): a floor for stage C."""
  if os.path.exists(wd.swap):
    return report_lib.read_json(wd.swap)
  model = compressed_model(config.pretrain.model, dataset, compressed, config, config.train.seed)
  copy_matching_params(pretrained, model)
  metrics = loop.evaluate_splits(model, dataset.splits, ("valid", "test"), config.train)
  report_lib.write_json_atomic(wd.swap, metrics)
  return metrics


def finetune_learning_rates(config, warm: bool) -> tuple[float, dict[str, float]]:
  """``(learning rate of every non-codebook weight, lr_overrides of the codebooks)`` of stage C.

  A warm start's weights come from stage A's best epoch, which already fits the train split as
  well as validation allows: training them further overfits within one epoch, so they train at
  ``finetune.learning_rate`` (0: frozen). Fresh weights (cold start) use ``train.learning_rate``.
  """
  ft = config.finetune
  base = config.train.learning_rate
  if warm:
    base = ft.learning_rate  # 0 freezes them (no update, no optimizer state)
  codebook = ft.codebook_learning_rate if ft.codebook_learning_rate > 0 else base
  return base, {"codebooks": codebook, "first_order_codebook": codebook}


def run_finetune(config, dataset, wd: Workdir, pretrained, compressed):
  """Stage C: backbone `model.name` over `CodebookEmbed` tables, trained with stage A's loop.

  With ``finetune.init_from_pretrain`` and stage A's backbone, every weight but the codebooks
  starts from stage A (a warm start; the model starts as the swap-in) and the learning rates
  come from `finetune_learning_rates`.
  """
  model = compressed_model(config.model.name, dataset, compressed, config, config.train.seed + 1)
  warm = config.finetune.init_from_pretrain and config.model.name == config.pretrain.model
  if warm:
    copied = copy_matching_params(pretrained, model)
    logging.info("finetune: warm start, %d parameters copied from stage A", copied)
  learning_rate, overrides = finetune_learning_rates(config, warm)
  result = loop.fit(
    model,
    dataset.splits,
    train_config=loop.TrainConfig.from_config(config, learning_rate=learning_rate),
    workdir=wd.root,
    name="finetune",
    lr_overrides=overrides,
  )
  return model, result


# --- orchestration --------------------------------------------------------------------------------


def run(config, workdir: str) -> dict | None:
  """Runs ``config.stage`` (or all stages) in ``workdir``; returns the report when one is written."""
  validate_config(config)
  wd = Workdir(workdir)
  workdir_config.check_and_record(config, wd.root)
  report_lib.write_json_atomic(os.path.join(wd.root, "config.json"), config.to_dict())
  timings = report_lib.read_json(wd.timings) if os.path.exists(wd.timings) else {}

  def timed(stage, fn, *args):
    start = time.time()
    out = fn(*args)
    timings[stage] = timings.get(stage, 0.0) + time.time() - start
    report_lib.write_json_atomic(wd.timings, timings)
    return out

  cache_dir = config.data.cache_dir or os.path.join(wd.root, "cache")
  dataset = timed("data", load_dataset, config.data, cache_dir)
  logging.info("dataset:\n%s", dataset.summary(config.quantize.min_vocab))
  stage = config.stage

  pretrained, full_result = timed("pretrain", run_pretrain, config, dataset, wd)
  if stage == "pretrain":
    return _finish(config, dataset, wd, full_result, {}, None, None, timings)

  compressed = {}
  if stage in ("all", "quantize"):
    compressed = timed("quantize", run_quantize, config, dataset, wd)
  if stage == "quantize":
    return _finish(config, dataset, wd, full_result, compressed, None, None, timings)
  if not compressed:
    compressed = load_compressed(config, dataset, wd)

  swap = None
  same_backbone = config.model.name == config.pretrain.model
  if config.finetune.swap_in and compressed and same_backbone:
    swap = timed("swap", run_swap, config, dataset, wd, pretrained, compressed)
  finetune_result = None
  if stage in ("all", "finetune"):
    _, finetune_result = timed(
      "finetune", run_finetune, config, dataset, wd, pretrained, compressed
    )
  elif os.path.exists(loop.result_path(wd.root, "finetune")):
    finetune_result = loop.load_result(wd.root, "finetune")
  return _finish(config, dataset, wd, full_result, compressed, finetune_result, swap, timings)


def _metrics(result) -> dict | None:
  if result is None:
    return None
  if isinstance(result, dict):
    return {k: float(v) for k, v in result.items() if k in report_lib.METRIC_KEYS}
  return {k: float(v) for k, v in result.metrics().items() if k in report_lib.METRIC_KEYS}


def _finish(config, dataset, wd, full_result, compressed, finetune_result, swap, timings) -> dict:
  fm = dataset.feature_map
  probe = compressed_model(config.model.name, dataset, compressed, config, 0)
  fields = field_memories(fm.names, fm.vocab_sizes, config.model.embed_dim, compressed)
  report = {
    "dataset": fm.dataset,
    "model": config.model.name,
    "pretrain_model": config.pretrain.model,
    "full": _metrics(full_result),
    "memory": memory_report(
      fields,
      first_order=config.model.name in FIRST_ORDER_MODELS,
      dense_param_count=dense_param_count(probe),
    ),
    "compressed_fields": report_lib.compressed_fields_section(compressed),
    "timings": dict(timings),
  }
  candidates = {}
  if finetune_result is not None:
    report["compressed_finetune"] = candidates["finetune"] = _metrics(finetune_result)
  if swap is not None:
    report["compressed_swap"] = candidates["swap"] = _metrics(swap)
  if candidates:
    score = lambda m: m["valid_auc"] - m["valid_logloss"]  # the monitor of the training loop
    source = max(candidates, key=lambda k: score(candidates[k]))
    report["compressed"] = {**candidates[source], "source": source}
  report_lib.write_json_atomic(wd.report, report)
  with open(os.path.join(wd.root, "report.md.tmp"), "w") as fh:
    fh.write(report_lib.to_markdown(report))
  os.replace(os.path.join(wd.root, "report.md.tmp"), os.path.join(wd.root, "report.md"))
  report_lib.write_plots(wd.root, report, compressed)
  return report


def summarize(report: dict) -> str:
  """A few lines for the terminal."""
  lines = [f"dataset {report['dataset']}, model {report['model']}"]
  if report.get("full"):
    lines.append(f"  full:       test AUC {report['full']['test_auc']:.4f}")
  if report.get("compressed"):
    c = report["compressed"]
    lines.append(f"  compressed: test AUC {c['test_auc']:.4f} ({c['source']})")
  mem = report.get("memory", {})
  if mem:
    lines.append(
      f"  embedding bytes {mem['full_bytes']:,} -> {mem['compressed_bytes_packed']:,} "
      f"({mem['ratio_packed']:.1f}x bit-packed)"
    )
  return "\n".join(lines)
