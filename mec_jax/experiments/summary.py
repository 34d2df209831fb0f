"""The table and plot of a grid: test AUC / logloss mean ± std over seeds per method x budget.

Bytes and ratios are those of ``report.json`` (``memory.compressed_fields_only``, bit-packed: the
compressed fields alone, the figure papers quote; ``ratio all`` is over all embedding tables).
The metrics are those of the kept compressed model (``report["compressed"]``: the better of
swap-in and finetuned on validation). Wall time is a cell's stages B and C (stage A is shared per
seed and shown in the ``full`` row). A cell that could not run shows its reason instead of
metrics: ``infeasible`` (the method cannot meet the budget) or ``failed`` (any other error; a
rerun of the grid retries it); a seed that failed beside others that ran is counted in ``failed``.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

RAW_COLUMNS = (
  "label",
  "method",
  "target_ratio",
  "seed",
  "test_auc",
  "test_logloss",
  "bytes",
  "ratio",
  "ratio_all_tables",
  "kept",
  "seconds",
  "note",
)


def label(overrides: dict) -> str:
  """The line a cell belongs to: its method plus every override but the budget."""
  extra = [
    f"{k.rsplit('.', 1)[-1]}={v}"
    for k, v in sorted(overrides.items())
    if k not in ("compress.method", "compress.target_ratio")
  ]
  method = str(overrides.get("compress.method", "pq"))
  return method + (f" ({', '.join(extra)})" if extra else "")


def raw_rows(records: list[dict]) -> list[dict]:
  """One row per finished cell and seed, plus one ``full`` row per seed."""
  rows, full_seen = [], set()
  for rec in records:
    over = rec["overrides"]
    base = {
      "label": label(over),
      "method": over.get("compress.method", "pq"),
      "target_ratio": float(over.get("compress.target_ratio", 0.0)),
      "seed": rec["seed"],
    }
    if "infeasible" in rec or "failed" in rec:
      why = "infeasible" if "infeasible" in rec else "failed"
      rows.append(base | {"note": f"{why}: {rec[why]}"})
      continue
    report = rec["report"]
    mem = report["memory"]
    only = mem["compressed_fields_only"]
    kept = report.get("compressed", {})
    rows.append(
      base
      | {
        "test_auc": kept.get("test_auc"),
        "test_logloss": kept.get("test_logloss"),
        "bytes": only["compressed_bytes_packed"],
        "ratio": only["ratio_packed"],
        "ratio_all_tables": mem["ratio_packed"],
        "kept": kept.get("source", ""),
        "seconds": rec["seconds"],
      }
    )
    if rec["seed"] not in full_seen:
      full_seen.add(rec["seed"])
      rows.append(
        {
          "label": "full (stage A)",
          "method": "full",
          "target_ratio": 1.0,
          "seed": rec["seed"],
          "test_auc": report["full"]["test_auc"],
          "test_logloss": report["full"]["test_logloss"],
          "bytes": only["full_bytes"],
          "ratio": 1.0,
          "ratio_all_tables": 1.0,
          "seconds": rec.get("stage_a_seconds"),
        }
      )
  return rows


def _stats(values) -> tuple[float, float]:
  vals = [v for v in values if v is not None]
  if not vals:
    return float("nan"), float("nan")
  return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")


def aggregate(rows: list[dict]) -> list[dict]:
  """Mean ± std (sample std over seeds) per (label, target ratio); ``failed``: seeds that failed;
  ``note``: why a group has no result at all (infeasible or failed)."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault((row["label"], row["target_ratio"]), []).append(row)
  out = []
  for (name, ratio), members in groups.items():
    done = [m for m in members if m.get("test_auc") is not None]
    auc, auc_std = _stats(m["test_auc"] for m in done)
    loss, loss_std = _stats(m["test_logloss"] for m in done)
    notes = sorted({m["note"] for m in members if m.get("note")})
    kept = sorted({m.get("kept") for m in done if m.get("kept")})
    out.append(
      {
        "label": name,
        "method": members[0]["method"],
        "target_ratio": ratio,
        "seeds": len(done),
        "failed": sum(1 for m in members if m.get("note", "").startswith("failed:")),
        "test_auc": auc,
        "test_auc_std": auc_std,
        "test_logloss": loss,
        "test_logloss_std": loss_std,
        "bytes": _stats(m["bytes"] for m in done)[0],
        "ratio": _stats(m["ratio"] for m in done)[0],
        "ratio_all_tables": _stats(m["ratio_all_tables"] for m in done)[0],
        "kept": "/".join(kept),
        "seconds": _stats(m.get("seconds") for m in done)[0],
        "note": notes[0][:120] if notes and not done else "",
      }
    )
  return sorted(out, key=lambda r: (r["method"] != "full", r["label"], r["target_ratio"]))


def _pm(mean: float, std: float) -> str:
  if math.isnan(mean):
    return "—"
  return f"{mean:.4f}" + (f" ± {std:.4f}" if not math.isnan(std) else "")


def to_markdown(table: list[dict], title: str) -> str:
  lines = [
    f"### {title}",
    "",
    "| method | target | seeds | test AUC | test logloss | bytes (compressed fields) | ratio "
    "| ratio (all tables) | kept | wall s / cell |",
    "|---|---:|---:|---|---|---:|---:|---:|---|---:|",
  ]
  for r in table:
    target = "—" if r["method"] in ("full", "int8", "int4") else f"{r['target_ratio']:g}x"
    if r["note"]:
      lines.append(f"| {r['label']} | {target} | 0 | {r['note']} | | | | | | |")
      continue
    seeds = f"{r['seeds']} (+{r['failed']} failed)" if r.get("failed") else str(r["seeds"])
    lines.append(
      f"| {r['label']} | {target} | {seeds} | {_pm(r['test_auc'], r['test_auc_std'])} "
      f"| {_pm(r['test_logloss'], r['test_logloss_std'])} | {r['bytes']:,.0f} "
      f"| {r['ratio']:.1f}x | {r['ratio_all_tables']:.1f}x | {r['kept']} | {r['seconds']:.0f} |"
    )
  return "\n".join(lines) + "\n"


def plot(table: list[dict], path: str, title: str) -> None:
  """AUC vs bytes (log x), one line per method label, seed std as error bars."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  lines: dict[str, list[dict]] = {}
  for r in table:
    if not math.isnan(r["test_auc"]):
      lines.setdefault(r["label"], []).append(r)
  for name, points in lines.items():
    points = sorted(points, key=lambda r: r["bytes"])
    x = [p["bytes"] for p in points]
    y = [p["test_auc"] for p in points]
    err = [0.0 if math.isnan(p["test_auc_std"]) else p["test_auc_std"] for p in points]
    style = {"linestyle": "--", "marker": "*"} if name.startswith("full") else {"marker": "o"}
    ax.errorbar(x, y, yerr=err, label=name, capsize=3, **style)
  ax.set_xscale("log")
  ax.set_xlabel("embedding bytes of the compressed fields (bit-packed, log scale)")
  ax.set_ylabel("test AUC (mean ± std over seeds)")
  ax.set_title(title, fontsize=9)
  if lines:  # none while every finished cell failed or was infeasible
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(_tmp(path) + ".png", dpi=110)
  os.replace(_tmp(path) + ".png", path)
  plt.close(fig)


def _tmp(path: str) -> str:
  return f"{path}.{os.getpid()}.tmp"  # grids of several seeds may run side by side


def _write_csv(path: str, rows: list[dict], columns) -> None:
  tmp = _tmp(path)
  with open(tmp, "w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  os.replace(tmp, path)


def write(root: str, config, records: list[dict]) -> list[dict]:
  """Writes results_raw.csv, results.csv, results.md and auc_vs_bytes.png under ``root``."""
  rows = raw_rows(records)
  table = aggregate(rows)
  title = f"{config.data.name}: {config.model.name}, d={config.model.embed_dim}"
  if records and not all(r.get("finetune", True) for r in records):
    title += " (swap-in: stage-A weights + compressed tables, no stage C)"
  _write_csv(os.path.join(root, "results_raw.csv"), rows, RAW_COLUMNS)
  _write_csv(os.path.join(root, "results.csv"), table, table[0].keys() if table else RAW_COLUMNS)
  text = to_markdown(table, title)
  tmp = _tmp(os.path.join(root, "results.md"))
  with open(tmp, "w") as fh:
    fh.write(text)
  os.replace(tmp, os.path.join(root, "results.md"))
  if table:
    plot(table, os.path.join(root, "auc_vs_bytes.png"), title)
  return table


def one_line(record: dict) -> str:
  """A short log line for a finished cell."""
  for why in ("infeasible", "failed"):
    if why in record:
      return f"{why}: " + record[why][:200]
  kept = record["report"].get("compressed", {})
  only = record["report"]["memory"]["compressed_fields_only"]
  return (
    f"test AUC {kept.get('test_auc', float('nan')):.4f}, {only['compressed_bytes_packed']:,} B "
    f"({only['ratio_packed']:.1f}x), {record['seconds']:.0f}s"
  )
