"""Stages A -> B -> C -> report over one work directory (DESIGN §1, §3, §7).

Layout of ``workdir``::

  config.json                  the resolved config of the last run
  stages.json                  per stage, the settings its artifacts were computed with
  cache/                       encoded dataset (unless data.cache_dir says otherwise)
  pretrain/  finetune/         checkpoints, metrics.jsonl, result of `train.fit`
  pretrain/tables/<field>.npz  stage-A output: embedding [V, d], bias [V] (if any), counts [V]
                               (or the validated tables of pretrain.external_tables)
  quantize/<field>.npz         stage-B output of compress.method pq: a `CompressedTable` per field
  quantize/<field>.<m>.npz     stage-B output of compress.method m (its `methods.Artifact`)
  swap/result.json             stage-A weights with compressed tables, evaluated without training
  finetune/tables/<field>.npz  the kept compressed model's tables (`methods.Artifact`), stage C's product
  export/  export/full/        the kept compressed model and stage A's, servable (`mec_jax.export`)
  report.json  report.md  code_usage.png  auc_vs_bytes.png

Every artifact is written atomically, and a stage whose artifact exists is not run again.
``--config.stage=report`` only reads the workdir (see `run`). In a multi-process run
(`mec_jax.train.distributed`) only process 0 writes; the work directory must be shared by all
processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import numpy as np
from absl import logging
from flax import nnx

from mec_jax import artifacts, external, methods, preflight, workdir_config, workdir_lock
from mec_jax import report as report_lib
from mec_jax.compression import quantizer
from mec_jax.compression.settings import VARIANTS
from mec_jax.data import EncodedDataset, fingerprint, load_dataset, preprocess
from mec_jax.errors import ArtifactError
from mec_jax.export import writer
from mec_jax.layers.embed import Embed
from mec_jax.layers.field_embedding import FieldEmbedding
from mec_jax.memory import field_memories, memory_report
from mec_jax.models import registry
from mec_jax.train import distributed, loop

STAGES = ("all", "pretrain", "quantize", "finetune", "report", "export")


def validate_config(config) -> None:
  """Checks the keys users set most often; raises ValueError naming the key and the choices."""
  if config.stage not in STAGES:
    raise ValueError(f"config.stage={config.stage!r}; expected one of {STAGES}")
  for key in ("model.name", "pretrain.model"):
    name = config.model.name if key == "model.name" else config.pretrain.model
    if name not in registry.MODEL_NAMES:
      raise ValueError(f"config.{key}={name!r}; expected one of {sorted(registry.MODEL_NAMES)}")
  methods.validate(config)
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
  """Paths of the artifacts of one run (creates nothing: each writer makes its own folder)."""

  def __init__(self, root: str):
    self.root = os.path.abspath(root)
    self.tables = os.path.join(self.root, "pretrain", "tables")
    self.quantize = os.path.join(self.root, "quantize")
    self.swap = os.path.join(self.root, "swap", "result.json")
    self.finetuned_tables = os.path.join(self.root, "finetune", "tables")
    self.export = os.path.join(self.root, "export")
    self.timings = os.path.join(self.root, "timings.json")

  def table(self, field: str) -> str:
    return os.path.join(self.tables, f"{_safe(field)}.npz")

  def compressed(self, field: str) -> str:
    return os.path.join(self.quantize, f"{_safe(field)}.npz")

  def finetuned(self, field: str) -> str:
    return os.path.join(self.finetuned_tables, f"{_safe(field)}.npz")


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
    if spec.is_categorical and not os.path.exists(path) and distributed.is_writer():
      artifacts.save_stage_a_table(path, spec.name, *table.as_numpy(), spec.counts)
  distributed.barrier("pretrain tables written")  # stage B of every process reads them
  return model, result


def stage_b(config, wd: Workdir) -> methods.StageB:
  """Where stage B reads (stage A's tables) and writes (``quantize/``), and how."""
  return methods.StageB(
    table_path=wd.table,
    quantize_dir=wd.quantize,
    writes=distributed.is_writer(),  # every process computes the same tables
    mesh=distributed.local_mesh(),  # None (all devices) unless multi-process
    progress=_progress(config),
  )


def run_quantize(config, dataset: EncodedDataset, wd: Workdir) -> dict:
  """Stage B of MEC at ``config.quantize`` as given: one `PQTable` per field with vocab >=
  quantize.min_vocab (`run_compress` sizes it for ``compress.target_ratio`` first)."""
  return methods.pq.build_tables(config, dataset.feature_map, stage_b(config, wd))


def _progress(config):
  """``(field, epochs) -> tqdm callback`` when ``train.progress``, else None."""
  if not config.train.progress:
    return None
  from tqdm.auto import tqdm

  def bar_for(field: str, epochs: int):
    bar = tqdm(total=epochs, desc=f"quantize {field}", leave=False)

    def update(epoch, metrics):
      bar.update(1)
      bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, float)})
      if epoch + 1 >= epochs:
        bar.close()

    return update

  return bar_for


def run_compress(config, dataset: EncodedDataset, wd: Workdir) -> dict:
  """Stage B of ``compress.method``: ``{field: methods.Artifact}``, saved artifacts reused."""
  method = methods.get(config.compress.method)
  return method.build(config, dataset.feature_map, stage_b(config, wd))


def load_compressed(config, dataset: EncodedDataset, wd: Workdir) -> dict:
  """The saved stage-B artifacts of ``compress.method`` (ArtifactError when one is missing)."""
  method = methods.get(config.compress.method)
  return methods.load_each(method, config, dataset.feature_map, stage_b(config, wd))


def run_swap(config, dataset, wd: Workdir, pretrained, compressed) -> dict | None:
  """Stage-A weights with compressed tables, no training (DESIGN §3): a floor for stage C."""
  if os.path.exists(wd.swap):
    return report_lib.read_json(wd.swap)
  model = compressed_model(config.pretrain.model, dataset, compressed, config, config.train.seed)
  copy_matching_params(pretrained, model)
  metrics = loop.evaluate_splits(model, dataset.splits, ("valid", "test"), config.train)
  if distributed.is_writer():
    os.makedirs(os.path.dirname(wd.swap), exist_ok=True)
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
  return base, dict.fromkeys(methods.get(config.compress.method).trainable_params, codebook)


def run_finetune(config, dataset, wd: Workdir, pretrained, compressed):
  """Stage C: backbone `model.name` over `CodebookEmbed` tables, trained with stage A's loop.

  With ``finetune.init_from_pretrain`` and stage A's backbone, every weight but the codebooks
  starts from stage A (a warm start; the model starts as the swap-in) and the learning rates
  come from `finetune_learning_rates`.
  """
  model = compressed_model(config.model.name, dataset, compressed, config, config.train.seed + 1)
  same_backbone = config.model.name == config.pretrain.model
  warm = pretrained is not None and config.finetune.init_from_pretrain and same_backbone
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


def kept_model(config, dataset, pretrained, compressed, finetuned, source: str):
  """The compressed model report.json keeps: stage C's, or the swap-in (stage A + stage B tables)."""
  if source == "finetune":
    return finetuned
  model = compressed_model(config.pretrain.model, dataset, compressed, config, config.train.seed)
  copy_matching_params(pretrained, model)
  return model


def ship(config, dataset, wd, report, kept, pretrained, compressed, with_export) -> dict:
  """Writes the products of a finished run; returns their paths (relative to the workdir).

  ``finetune/tables/<field>.npz``: the kept compressed model's tables as artifacts of their
  method (stage C's weights, or stage B's for the swap-in); with ``with_export``, `run_export`.
  """
  source = report["compressed"]["source"]
  names = dataset.feature_map.names
  writer.save_tables(kept, names, wd.finetuned, compressed, source=source)
  artifacts = {"finetuned_tables": os.path.relpath(wd.finetuned_tables, wd.root)}
  if with_export:
    run_export(config, dataset, wd, kept, pretrained, report)
    artifacts["export"] = os.path.relpath(wd.export, wd.root)
  return artifacts


def run_export(config, dataset, wd: Workdir, kept, pretrained, report: dict) -> None:
  """Writes ``export/`` (the kept compressed model) and ``export/full/`` (stage A's model)."""
  names = dataset.feature_map.names
  platforms = tuple(config.export.platforms)
  meta = {"dataset": report["dataset"], "source": report["compressed"]["source"]}
  raw = preprocess.build(config.data, dataset.feature_map, dataset.stats)  # re-reads train
  staging = wd.export + ".new"
  writer.export_model(
    kept, staging, field_names=names, platforms=platforms, preprocess=raw,
    meta=meta | {"model": report["model"], "metrics": report["compressed"]},
  )  # fmt: skip
  if config.export.full and pretrained is not None:
    writer.export_model(
      pretrained, os.path.join(staging, "full"), field_names=names, platforms=platforms,
      meta={"dataset": report["dataset"], "model": config.pretrain.model, "metrics": report["full"]},
      preprocess=raw,
    )  # fmt: skip
  if os.path.exists(wd.export):
    shutil.rmtree(wd.export)
  os.replace(staging, wd.export)


# --- orchestration --------------------------------------------------------------------------------


def run(config, workdir: str) -> dict | None:
  """Runs ``config.stage`` (or all stages) in ``workdir``; returns the report when one is written.

  Before any long work: the config, the workdir (a writable directory; unchanged settings for
  the stages already there), the dataset and `preflight.preflight`. A single stage needs the
  outputs of the stages before it and never runs them. ``stage=report`` writes nothing in
  ``workdir``: the report goes to ``config.report_dir``, or to ``workdir`` when that is writable,
  or (read-only, no ``report_dir``) is only returned.

  A run that writes holds ``workdir``'s lock (`workdir_lock.hold`) from here to its return: a
  second run on the same ``workdir`` stops at once with `BusyError`. Stages bind to the input
  files' fingerprint as to their settings (`workdir_config.check`).
  """
  validate_config(config)
  wd = Workdir(workdir)
  writes = config.stage != "report"
  writer = distributed.is_writer()  # only process 0 writes in a multi-process run
  workdir_config.check_workdir(wd.root, writable=writes and writer)
  with workdir_lock.hold(wd.root) if writes and writer else contextlib.nullcontext():
    return _run_stages(config, wd, writes, writer)


def _run_stages(config, wd: Workdir, writes: bool, writer: bool) -> dict | None:
  """`run` past its first checks, with the work directory locked."""
  cache_dir = config.data.cache_dir or os.path.join(wd.root, "cache")
  inputs = fingerprint.input_fingerprint(config.data, exclude=(wd.root, cache_dir))
  workdir_config.check(config, wd.root, inputs)
  timings = report_lib.read_json(wd.timings) if os.path.exists(wd.timings) else {}

  def timed(stage, fn, *args):
    start = time.time()
    out = fn(*args)
    timings[stage] = timings.get(stage, 0.0) + time.time() - start
    if writes and writer:
      report_lib.write_json_atomic(wd.timings, timings)
    return out

  dataset = timed("data", load_dataset, config.data, cache_dir, (wd.root,))
  note = preflight.preflight(config, dataset, wd)
  logging.info("dataset:\n%s", dataset.summary(config.quantize.min_vocab))
  if not writes:
    return run_report(config, dataset, wd, timings, note)
  stage = config.stage
  out_dir = (config.report_dir or wd.root) if writer else None
  finished = os.path.exists(loop.result_path(wd.root, "finetune"))
  if stage == "export" and not (finished or os.path.exists(wd.swap)):  # never train to export
    raise ArtifactError(f"{wd.root}: no finished stage C to export; run --config.stage=all first")

  def record(stage_name: str) -> None:  # the settings a stage's outputs are computed with
    if writer:
      workdir_config.record(config, wd.root, stage_name, inputs)

  if writer:
    report_lib.write_json_atomic(os.path.join(wd.root, "config.json"), config.to_dict())

  record("pretrain")
  if config.pretrain.external_tables:  # tables trained elsewhere stand in for stage A
    pretrained, full_result = None, None
    timed("pretrain", external.write_stage_a_tables, config, dataset, wd.table)
  else:
    pretrained, full_result = timed("pretrain", run_pretrain, config, dataset, wd)
  if stage == "pretrain" or note:
    return _finish(config, dataset, wd, full_result, {}, None, None, timings, out_dir, note)

  compressed = {}
  if stage in ("all", "quantize"):
    record("quantize")
    compressed = timed("quantize", run_compress, config, dataset, wd)
  if not compressed and stage != "quantize":
    compressed = load_compressed(config, dataset, wd)

  swap = None  # part of stage B's outputs (swap/result.json), so stage=quantize writes it too
  same_backbone = config.model.name == config.pretrain.model
  if config.finetune.swap_in and compressed and same_backbone and pretrained is not None:
    swap = timed("swap", run_swap, config, dataset, wd, pretrained, compressed)
  if stage == "quantize":
    return _finish(config, dataset, wd, full_result, compressed, None, swap, timings, out_dir)
  finetuned, finetune_result = None, None
  if stage in ("all", "finetune"):
    record("finetune")
    finetuned, finetune_result = timed(
      "finetune", run_finetune, config, dataset, wd, pretrained, compressed
    )
  elif stage == "export" and finished:  # restores the best checkpoint; trains nothing
    finetuned, finetune_result = run_finetune(config, dataset, wd, pretrained, compressed)
  if stage == "export" and finetune_result is None and swap is None:
    raise ArtifactError(f"{wd.root}: no finished stage C to export; run --config.stage=all first")
  report = _finish(
    config, dataset, wd, full_result, compressed, finetune_result, swap, timings, out_dir
  )
  if "compressed" in report and writer:
    kept = kept_model(
      config, dataset, pretrained, compressed, finetuned, report["compressed"]["source"]
    )
    with_export = stage != "finetune"
    args = (config, dataset, wd, report, kept, pretrained, compressed, with_export)
    report["artifacts"] = timed("export" if with_export else "finetune", ship, *args)
    report["timings"] = dict(timings)
    report_lib.write_report(out_dir, report, compressed)
  return report


def run_report(config, dataset, wd: Workdir, timings: dict, note: str | None) -> dict:
  """``stage=report``: the report of what ``wd`` holds, from its files alone (no training,
  no checkpoint read, nothing written in ``wd`` unless it is writable)."""
  full_result = loop.load_result(wd.root, "pretrain")
  names = [f.name for f in dataset.feature_map.fields]
  to_compress = [
    names[i] for i in dataset.feature_map.fields_to_compress(config.quantize.min_vocab)
  ]
  compressed, swap, finetune_result = {}, None, None
  method = methods.get(config.compress.method)
  stored = [method.artifact_path(wd.quantize, os.path.basename(wd.table(n))) for n in to_compress]
  if not note and all(os.path.exists(path) for path in stored):
    compressed = load_compressed(config, dataset, wd)
    if os.path.exists(wd.swap):
      swap = report_lib.read_json(wd.swap)
    if os.path.exists(loop.result_path(wd.root, "finetune")):
      finetune_result = loop.load_result(wd.root, "finetune")
  out_dir = config.report_dir or (wd.root if workdir_config.is_writable(wd.root) else None)
  if out_dir is None:
    logging.warning(
      "%s is read-only: report not written (set --config.report_dir=DIR to write it)", wd.root
    )
  return _finish(
    config, dataset, wd, full_result, compressed, finetune_result, swap, timings, out_dir, note
  )


def _metrics(result) -> dict | None:
  if result is None:
    return None
  if isinstance(result, dict):
    return {k: float(v) for k, v in result.items() if k in report_lib.METRIC_KEYS}
  return {k: float(v) for k, v in result.metrics().items() if k in report_lib.METRIC_KEYS}


def _finish(
  config, dataset, wd, full_result, compressed, finetune_result, swap, timings, out_dir, note=None
) -> dict:
  """Builds the report; writes it (json, markdown, plots) to ``out_dir`` unless that is None."""
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
      first_order=probe.uses_first_order,  # the backbone says whether it has LR terms
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
  if note:
    report["nothing_compressed"] = note
  if out_dir is not None:
    report_lib.write_report(out_dir, report, compressed)
  return report


def summarize(report: dict) -> str:
  """A few lines for the terminal."""
  lines = [f"dataset {report['dataset']}, model {report['model']}"]
  if report.get("full"):
    lines.append(f"  full:       test AUC {report['full']['test_auc']:.4f}")
  if report.get("compressed"):
    c = report["compressed"]
    lines.append(f"  compressed: test AUC {c['test_auc']:.4f} ({c['source']})")
  if report.get("nothing_compressed"):
    lines.append(f"  {report['nothing_compressed']}")
  mem = report.get("memory", {})
  if mem:
    lines.append(
      f"  embedding bytes {mem['full_bytes']:,} -> {mem['compressed_bytes_packed']:,} "
      f"({mem['ratio_packed']:.1f}x bit-packed)"
    )
  return "\n".join(lines)
