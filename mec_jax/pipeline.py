"""Stages A -> B -> C -> report -> export over one work directory (DESIGN §1, §3, §7).

Where each artifact lives is `mec_jax.workdir`'s business (its docstring draws the layout); how
models are built is `mec_jax.model_factory`'s; the report is `mec_jax.report`'s. This module is
the stage sequence. Every artifact is written atomically, and a stage whose artifact exists is
not run again. ``--config.stage=report`` only reads the workdir (see `run`). In a multi-process
run (`mec_jax.train.distributed`) only process 0 writes; the work directory must be shared by
all processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time

from absl import logging

from mec_jax import artifacts, external, methods, preflight, workdir_lock
from mec_jax import report as report_lib
from mec_jax import workdir as workdir_lib
from mec_jax.config_checks import validate_config
from mec_jax.data import EncodedDataset, fingerprint, load_dataset, preprocess
from mec_jax.errors import ArtifactError
from mec_jax.export import writer
from mec_jax.model_factory import compressed_model, copy_matching_params, full_model
from mec_jax.report import RunResults, summarize  # noqa: F401  (summarize: pipeline's API)
from mec_jax.train import distributed, loop
from mec_jax.train.metrics import monitor_score
from mec_jax.workdir import Workdir

# --- stages ---------------------------------------------------------------------------------------


def run_pretrain(config, dataset: EncodedDataset, wd: Workdir):
  """Stage A: train the full model, then save its tables and the train counts."""
  model = full_model(config.pretrain.model, dataset, config, config.train.seed)
  result = loop.fit(
    model,
    dataset.splits,
    train_config=loop.TrainConfig.from_config(config),  # reads model.embedding_regularizer too
    workdir=wd.root,
    name="pretrain",
  )
  for spec, table in zip(dataset.feature_map.fields, model.embedding.tables, strict=True):
    path = wd.table(spec.name)
    if spec.is_categorical and not os.path.exists(path) and distributed.is_writer():
      artifacts.save_stage_a_table(path, spec.name, *table.as_numpy(), spec.counts)
  distributed.barrier("pretrain tables written")  # stage B of every process reads them
  return model, result


def stage_b(config, wd: Workdir, dataset=None, pretrained=None) -> methods.StageB:
  """Where stage B reads (stage A's tables) and writes (``quantize/``), and how; with stage A's
  model, methods that select on validation may score swap-in models (`swap_valid`)."""
  evaluate = None
  if pretrained is not None and dataset is not None:
    evaluate = lambda compressed: swap_valid(config, dataset, pretrained, compressed)  # noqa: E731
  return methods.StageB(
    table_path=wd.table,
    quantize_dir=wd.quantize,
    writes=distributed.is_writer(),  # every process computes the same tables
    mesh=distributed.local_mesh(),  # None (all devices) unless multi-process
    progress=_progress(config),
    evaluate=evaluate,
  )


def swap_valid(config, dataset, pretrained, compressed) -> dict:
  """Validation metrics of stage A's weights with ``compressed`` tables (no training), and
  ``valid_score`` (``train.monitor``)."""
  model = compressed_model(config.pretrain.model, dataset, compressed, config, config.train.seed)
  copy_matching_params(pretrained, model)
  out = loop.evaluate_splits(model, dataset.splits, ("valid",), config.train)
  metrics = {"auc": out["valid_auc"], "logloss": out["valid_logloss"]}
  return out | {"valid_score": monitor_score(metrics, config.train.monitor)}


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


def run_compress(config, dataset: EncodedDataset, wd: Workdir, pretrained=None) -> dict:
  """Stage B of ``compress.method``: ``{field: methods.Artifact}``, saved artifacts reused."""
  method = methods.get(config.compress.method)
  return method.build(config, dataset.feature_map, stage_b(config, wd, dataset, pretrained))


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
  shipped = {"finetuned_tables": os.path.relpath(wd.finetuned_tables, wd.root)}
  if with_export:
    run_export(config, dataset, wd, kept, pretrained, report)
    shipped["export"] = os.path.relpath(wd.export, wd.root)
  return shipped


def run_export(config, dataset, wd: Workdir, kept, pretrained, report: dict) -> None:
  """Writes ``export/`` (the kept compressed model) and ``export/full/`` (stage A's model)."""
  names = dataset.feature_map.names
  platforms = tuple(config.export.platforms)
  meta = {"dataset": report["dataset"], "source": report["compressed"]["source"]}
  raw = preprocess.build(config.data, dataset.feature_map, dataset.stats)  # re-reads train
  staging = wd.export_staging
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
  files' fingerprint as to their settings (`workdir.check`). ``compress.method=auto`` is
  `mec_jax.auto.run` (which calls this function once per stage and candidate).
  """
  validate_config(config)
  if config.compress.method == methods.protocols.AUTO:  # a run per candidate, then the pick
    from mec_jax import auto  # auto calls this function: imported here, not at the top

    return auto.run(config, workdir)
  wd = Workdir(workdir)
  writes = config.stage != "report"
  writer_process = distributed.is_writer()  # only process 0 writes in a multi-process run
  workdir_lib.check_workdir(wd.root, writable=writes and writer_process)
  with workdir_lock.hold(wd.root) if writes and writer_process else contextlib.nullcontext():
    return _Run(config, wd, writes, writer_process).stages()


class _Run:
  """`run` past its first checks, with the work directory locked: the stage sequence."""

  def __init__(self, config, wd: Workdir, writes: bool, writer_process: bool):
    self.config, self.wd, self.writes, self.writer = config, wd, writes, writer_process
    self.cache_dir = config.data.cache_dir or wd.cache
    self.inputs = fingerprint.input_fingerprint(config.data, exclude=(wd.root, self.cache_dir))
    self.compress_keys = methods.get(config.compress.method).config_keys  # what stage B reads
    workdir_lib.check(config, wd.root, self.inputs, self.compress_keys)
    self.timings = report_lib.read_json(wd.timings) if os.path.exists(wd.timings) else {}
    self.out_dir = (config.report_dir or wd.root) if writer_process else None

  def timed(self, stage: str, fn, *args):
    """``fn(*args)``, its seconds added to ``timings[stage]`` (saved in ``timings.json``)."""
    start = time.time()
    out = fn(*args)
    self.timings[stage] = self.timings.get(stage, 0.0) + time.time() - start
    if self.writes and self.writer:
      report_lib.write_json_atomic(self.wd.timings, self.timings)
    return out

  def record(self, stage: str) -> None:
    """Records the settings ``stage``'s outputs are computed with (`workdir.record`)."""
    if self.writer:
      workdir_lib.record(self.config, self.wd.root, stage, self.inputs, self.compress_keys)

  def stages(self) -> dict | None:
    config, wd, stage = self.config, self.wd, self.config.stage
    dataset = self.timed("data", load_dataset, config.data, self.cache_dir, (wd.root,))
    note = preflight.preflight(config, dataset, wd)
    logging.info("dataset:\n%s", dataset.summary(config.quantize.min_vocab))
    if not self.writes:
      return run_report(config, dataset, wd, self.timings, note)
    finished = os.path.exists(loop.result_path(wd.root, "finetune"))
    if stage == "export" and not (finished or os.path.exists(wd.swap)):  # never train to export
      raise ArtifactError(f"{wd.root}: no finished stage C to export; run --config.stage=all first")
    if self.writer:
      report_lib.write_json_atomic(wd.config, config.to_dict())
    results = RunResults(note=note)
    pretrained = self.stage_a(dataset, results)
    if stage == "pretrain" or note:
      return _finish(config, dataset, results, self.timings, self.out_dir)
    self.stage_b(dataset, results, pretrained)
    if stage == "quantize":
      return _finish(config, dataset, results, self.timings, self.out_dir)
    finetuned = self.stage_c(dataset, results, pretrained, finished)
    report = _finish(config, dataset, results, self.timings, self.out_dir)
    if "compressed" in report and self.writer:
      source = report["compressed"]["source"]
      kept = kept_model(config, dataset, pretrained, results.compressed, finetuned, source)
      with_export = stage != "finetune"
      args = (config, dataset, wd, report, kept, pretrained, results.compressed, with_export)
      report["artifacts"] = self.timed("export" if with_export else "finetune", ship, *args)
      report["timings"] = dict(self.timings)
      report_lib.write_report(self.out_dir, report, results.compressed)
    return report

  def stage_a(self, dataset, results: RunResults):
    """Stage A (or the external tables standing in for it); returns the trained model or None."""
    self.record("pretrain")
    if self.config.pretrain.external_tables:  # tables trained elsewhere stand in for stage A
      self.timed("pretrain", external.write_stage_a_tables, self.config, dataset, self.wd.table)
      return None
    pretrained, results.full = self.timed("pretrain", run_pretrain, self.config, dataset, self.wd)
    return pretrained

  def stage_b(self, dataset, results: RunResults, pretrained) -> None:
    """Stage B (or its saved artifacts), then the swap-in model, part of stage B's outputs
    (``swap/result.json``), so ``stage=quantize`` writes it too."""
    config, stage = self.config, self.config.stage
    if stage in ("all", "quantize"):
      self.record("quantize")
      args = (config, dataset, self.wd, pretrained)
      results.compressed = self.timed("quantize", run_compress, *args)
    if not results.compressed and stage != "quantize":
      results.compressed = load_compressed(config, dataset, self.wd)
    same_backbone = config.model.name == config.pretrain.model
    if config.finetune.swap_in and results.compressed and same_backbone and pretrained is not None:
      args = (config, dataset, self.wd, pretrained, results.compressed)
      results.swap = self.timed("swap", run_swap, *args)

  def stage_c(self, dataset, results: RunResults, pretrained, finished: bool):
    """Stage C (``stage=export`` restores its best checkpoint, training nothing); returns the
    finetuned model or None."""
    config, stage = self.config, self.config.stage
    args = (config, dataset, self.wd, pretrained, results.compressed)
    finetuned = None
    if stage in ("all", "finetune"):
      self.record("finetune")
      finetuned, results.finetune = self.timed("finetune", run_finetune, *args)
    elif stage == "export" and finished:
      finetuned, results.finetune = run_finetune(*args)
    if stage == "export" and results.finetune is None and results.swap is None:
      raise ArtifactError(
        f"{self.wd.root}: no finished stage C to export; run --config.stage=all first"
      )
    return finetuned


def run_report(config, dataset, wd: Workdir, timings: dict, note: str | None) -> dict:
  """``stage=report``: the report of what ``wd`` holds, from its files alone (no training,
  no checkpoint read, nothing written in ``wd`` unless it is writable)."""
  results = RunResults(full=loop.load_result(wd.root, "pretrain"), note=note)
  fm = dataset.feature_map
  to_compress = [fm.names[i] for i in fm.fields_to_compress(config.quantize.min_vocab)]
  method = methods.get(config.compress.method)
  stored = [wd.artifact(method, n) for n in to_compress]
  if not note and all(os.path.exists(path) for path in stored):
    results.compressed = load_compressed(config, dataset, wd)
    if os.path.exists(wd.swap):
      results.swap = report_lib.read_json(wd.swap)
    if os.path.exists(loop.result_path(wd.root, "finetune")):
      results.finetune = loop.load_result(wd.root, "finetune")
  out_dir = config.report_dir or (wd.root if workdir_lib.is_writable(wd.root) else None)
  if out_dir is None:
    logging.warning(
      "%s is read-only: report not written (set --config.report_dir=DIR to write it)", wd.root
    )
  return _finish(config, dataset, results, timings, out_dir)


def _finish(config, dataset, results: RunResults, timings: dict, out_dir: str | None) -> dict:
  """Builds the report; writes it (json, markdown, plots) to ``out_dir`` unless that is None."""
  report = report_lib.assemble(config, dataset, results, timings)
  if out_dir is not None:
    report_lib.write_report(out_dir, report, results.compressed)
  return report
