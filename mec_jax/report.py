"""`report.json`, `report.md` and the plots of a finished run (DESIGN §7)."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from mec_jax import model_factory
from mec_jax.compression.table import normalized_entropy
from mec_jax.errors import ArtifactError, one_line
from mec_jax.memory import field_memories, memory_report
from mec_jax.train.metrics import monitor_score

METRIC_KEYS = ("test_auc", "test_logloss", "valid_auc", "valid_logloss")


def write_json_atomic(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as fh:
    json.dump(obj, fh, indent=2, default=_jsonable)
  os.replace(tmp, path)


def write_report(directory: str, report: dict, tables: dict) -> None:
  """Writes ``report.json``, ``report.md`` and the plots into ``directory`` (created if missing)."""
  os.makedirs(directory, exist_ok=True)
  write_json_atomic(os.path.join(directory, "report.json"), report)
  tmp = os.path.join(directory, "report.md.tmp")
  with open(tmp, "w") as fh:
    fh.write(to_markdown(report))
  os.replace(tmp, os.path.join(directory, "report.md"))
  write_plots(directory, report, tables)


def _jsonable(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serializable: {type(value)}")


def read_json(path: str):
  """The JSON document in ``path``; an `ArtifactError` naming the file if it is damaged."""
  try:
    with open(path) as fh:
      return json.load(fh)
  except ValueError as err:  # empty or cut short
    raise ArtifactError(
      f"{path}: damaged JSON file ({one_line(err)}); delete it, and rerun to write it again"
    ) from err


def compressed_fields_section(tables: dict) -> dict:
  """Per compressed field: ``vocab_size``, ``method`` and the artifact's `knobs` (PQ: M, K,
  usage entropy, variant, stats; `mec_jax.methods.base.Artifact`)."""
  return {
    name: {"vocab_size": t.vocab_size, "method": t.method, **t.knobs()}
    for name, t in tables.items()
  }


def _fmt_bytes(n: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if abs(n) < 1024 or unit == "GiB":
      return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
    n /= 1024
  return str(n)


def _fmt(value, spec: str = ".3f") -> str:
  return "–" if value is None else format(value, spec)


def _metric_row(label: str, metrics: dict | None) -> str:
  if not metrics:
    return f"| {label} | – | – | – | – |"
  vals = " | ".join(f"{metrics.get(k, float('nan')):.4f}" for k in METRIC_KEYS)
  return f"| {label} | {vals} |"


def to_markdown(report: dict) -> str:
  lines = [
    f"# mec_jax report: {report['dataset']}",
    "",
    f"Stage A backbone `{report.get('pretrain_model')}`, stage C backbone `{report['model']}`.",
    "",
    "| model | test AUC | test logloss | valid AUC | valid logloss |",
    "|---|---|---|---|---|",
    _metric_row("full (stage A)", report.get("full")),
  ]
  if report.get("nothing_compressed"):
    lines += [
      "",
      f"**No field was compressed**: {report['nothing_compressed']}; the report "
      "shows the full model only.",
    ]
  if "compressed_swap" in report:
    lines.append(_metric_row("compressed, swap-in", report["compressed_swap"]))
  if "compressed_finetune" in report:
    lines.append(_metric_row("compressed, finetuned", report["compressed_finetune"]))
  comp = report.get("compressed")
  if comp:
    lines += ["", f"Compressed model kept (better validation score): **{comp.get('source')}**."]
    if report.get("full"):
      delta = comp["test_auc"] - report["full"]["test_auc"]
      lines.append(f"Test AUC change vs full: {delta:+.4f}.")
  mem = report.get("memory")
  if mem:
    lines += [
      "",
      "## Memory",
      "",
      "| scope | full | compressed (bit-packed) | ratio | compressed (stored) | ratio |",
      "|---|---|---|---|---|---|",
    ]
    for label, m in (
      ("all embedding tables", mem),
      ("compressed fields only", mem.get("compressed_fields_only")),
      ("whole model", mem.get("whole_model")),
    ):
      if m and m.get("full_bytes"):
        lines.append(
          f"| {label} | {_fmt_bytes(m['full_bytes'])} | {_fmt_bytes(m['compressed_bytes_packed'])} "
          f"| {m['ratio_packed']:.1f}x | {_fmt_bytes(m['compressed_bytes_stored'])} "
          f"| {m['ratio_stored']:.1f}x |"
        )
    lines += [
      "",
      "| field | vocab | compressed | full | packed | ratio |",
      "|---|---|---|---|---|---|",
    ]
    for name, f in mem.get("per_field", {}).items():
      lines.append(
        f"| {name} | {f['vocab_size']} | {'yes' if f['compressed'] else 'no'} "
        f"| {_fmt_bytes(f['full_bytes'])} | {_fmt_bytes(f['compressed_bytes_packed'])} "
        f"| {f['ratio_packed']:.1f}x |"
      )
  fields = {
    k: f for k, f in (report.get("compressed_fields") or {}).items() if "num_subspaces" in f
  }
  others = {k: f for k, f in (report.get("compressed_fields") or {}).items() if k not in fields}
  if others:
    lines += ["", "## Compressed fields (baselines)", "", "| field | vocab | method | knobs |"]
    lines.append("|---|---|---|---|")
    for name, f in others.items():
      knobs = ", ".join(f"{k}={v}" for k, v in f.items() if k not in ("vocab_size", "method"))
      lines.append(f"| {name} | {f['vocab_size']} | {f['method']} | {knobs} |")
  if fields:
    lines += [
      "",
      "## Compressed fields",
      "",
      "Errors: popularity-weighted squared row error of the shipped (refit) codebooks on the "
      "held-out rows, at the k-means start and at the epoch kept.",
      "",
      "| field | vocab | M | K | usage entropy / ln K | distinct codes | rare distinct "
      "| rare tuples | kept epoch / run | k-means start error | shipped error | stop reason |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in fields.items():
      lines.append(
        f"| {name} | {f['vocab_size']} | {f['num_subspaces']} | {f['codebook_size']} "
        f"| {f['code_usage_entropy']:.3f} | {_fmt(f.get('distinct_code_fraction'))} "
        f"| {_fmt(f.get('rare_distinct_fraction'))} | {_fmt(f.get('rare_tuple_fraction'))} "
        f"| {f.get('best_epoch', '–')} / "
        f"{f.get('epochs_run', '–')} | {_fmt(f.get('kmeans_error'), '.4g')} "
        f"| {_fmt(f.get('shipped_error'), '.4g')} | {f.get('stop_reason', '–')} |"
      )
  artifacts = report.get("artifacts")
  if artifacts:
    lines += ["", "## Artifacts", ""]
    lines += [f"- {k}: `{v}/`" for k, v in artifacts.items()]
  timings = report.get("timings")
  if timings:
    lines += ["", "## Timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
  return "\n".join(lines) + "\n"


def write_plots(workdir: str, report: dict, tables: dict) -> list[str]:
  """Writes ``code_usage.png`` (artifacts with codes: ``code_usage() [M, K]``) and
  ``auc_vs_bytes.png``; returns the paths written."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  paths = []
  usage = {k: t.code_usage() for k, t in tables.items() if hasattr(t, "code_usage")}
  if usage:
    fig, axes = plt.subplots(len(usage), 1, figsize=(8, 2.2 * len(usage)), squeeze=False)
    for ax, (name, counts) in zip(axes[:, 0], usage.items(), strict=True):
      ent = normalized_entropy(counts)
      for m in range(counts.shape[0]):
        ax.plot(np.sort(counts[m])[::-1], label=f"sub-space {m} (H/lnK={ent[m]:.2f})")
      ax.set_yscale("symlog")
      ax.set_title(f"{name}: ids per code, sorted")
      ax.set_xlabel("code rank")
      ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(os.path.join(workdir, "code_usage.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

  mem = report.get("memory", {})
  points = []
  if report.get("full") and mem:
    points.append(("full", mem["full_bytes"], report["full"]["test_auc"]))
  for key, label in (("compressed_swap", "swap-in"), ("compressed_finetune", "finetuned")):
    if report.get(key) and mem:
      points.append((label, mem["compressed_bytes_packed"], report[key]["test_auc"]))
  if points:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, size, auc in points:
      ax.scatter([size], [auc], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("embedding bytes (compressed: bit-packed)")
    ax.set_ylabel("test AUC")
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(workdir, "auc_vs_bytes.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
  return paths


# --- assembly -------------------------------------------------------------------------------------


@dataclasses.dataclass
class RunResults:
  """What the stages of one run produced, for `assemble` (each None/empty when not run or absent).

  Attributes:
    full: stage A's `train.fit` result (or its metrics dict).
    compressed: ``{field: methods.Artifact}`` of stage B.
    finetune: stage C's `train.fit` result (or its metrics dict).
    swap: the swap-in model's metrics (stage A's weights with stage B's tables, no training).
    note: why nothing was compressed, if so.
  """

  full: object = None
  compressed: dict = dataclasses.field(default_factory=dict)
  finetune: object = None
  swap: dict | None = None
  note: str | None = None


def metrics_of(result) -> dict | None:
  """The `METRIC_KEYS` of a `train.fit` result or a metrics dict, as floats (None for None)."""
  if result is None:
    return None
  values = result if isinstance(result, dict) else result.metrics()
  return {k: float(v) for k, v in values.items() if k in METRIC_KEYS}


def kept_source(candidates: dict[str, dict], monitor: str) -> str:
  """The key of ``candidates`` (``{"finetune" | "swap": metrics}``) with the best validation score
  (``monitor``, a `train.monitor` value); ties go to the first."""

  def score(name):
    m = candidates[name]
    return monitor_score({"auc": m["valid_auc"], "logloss": m["valid_logloss"]}, monitor)

  return max(candidates, key=score)


def assemble(config, dataset, results: RunResults, timings: dict) -> dict:
  """The ``report.json`` document of a run (DESIGN §7).

  The backbone is built as shapes only (`model_factory.abstract_compressed_model`): it says
  whether it has first-order terms and how many dense parameters it holds, allocating no table.
  The compressed model kept is the candidate (stage C, swap-in) with the best validation score
  (``train.monitor``, the score the training loop keeps its best checkpoint by).
  """
  fm, compressed = dataset.feature_map, results.compressed
  probe = model_factory.abstract_compressed_model(config.model.name, dataset, compressed, config)
  fields = field_memories(fm.names, fm.vocab_sizes, config.model.embed_dim, compressed)
  report = {
    "dataset": fm.dataset,
    "model": config.model.name,
    "pretrain_model": config.pretrain.model,
    "full": metrics_of(results.full),
    "memory": memory_report(
      fields,
      first_order=probe.uses_first_order,  # the backbone says whether it has LR terms
      dense_param_count=model_factory.dense_param_count(probe),
    ),
    "compressed_fields": compressed_fields_section(compressed),
    "timings": dict(timings),
  }
  candidates = {}
  if results.finetune is not None:
    report["compressed_finetune"] = candidates["finetune"] = metrics_of(results.finetune)
  if results.swap is not None:
    report["compressed_swap"] = candidates["swap"] = metrics_of(results.swap)
  if candidates:
    source = kept_source(candidates, config.train.monitor)
    report["compressed"] = {**candidates[source], "source": source}
  if results.note:
    report["nothing_compressed"] = results.note
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
  if report.get("auto"):  # compress.method=auto (mec_jax.auto)
    auto = report["auto"]
    lines.append(f"  auto:       picked {auto['picked']} of {len(auto['candidates'])} candidates")
  mem = report.get("memory", {})
  if mem:
    lines.append(
      f"  embedding bytes {mem['full_bytes']:,} -> {mem['compressed_bytes_packed']:,} "
      f"({mem['ratio_packed']:.1f}x bit-packed)"
    )
  return "\n".join(lines)
