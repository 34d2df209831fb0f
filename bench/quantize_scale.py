"""Stage B at scale: `quantize_table` on one Zipf-weighted table of millions of rows.

For each ``--rows`` size and each ``--variants`` entry a fresh subprocess generates the table
(chunked, so generation itself never holds more than the table plus one chunk), runs
`quantize_table` once and reports, as one JSON line, its wall time per phase, rows/s, peak RSS
(``ru_maxrss`` of that process, table included), its CPU seconds (user + system: on a shared
machine a steadier figure than wall time), the popularity-weighted reconstruction error and
the code usage entropy / ln K. Sizes of ``--lock_rows`` rows or more run under
``flock /tmp/mec_heavy.lock`` so two big runs never share the machine.

The table imitates a stage-A table (as in ``bench/quantizer.py``): Zipf(``--zipf``) popularity
with ``--interactions_per_row`` expected train counts per row (Poisson), a latent cluster
identity per row whose share in the embedding grows with its count (``1 - exp(-n_v / 5)``), the
rest initialization noise; a first-order weight per row is passed as ``bias``.

Phases are timed by wrapping the library's functions in this process (nested phases are part of
their parents): k-means row sampling / seeding / Lloyd on the sample / the streamed refine and
final-assignment passes over all rows (all sub-spaces at once, summed over calls; for
``mec`` this is the k-means start of the codebooks on ``enc(x)``), the quantizer epochs (between
``progress`` callbacks), the rest of quantizer training (hold-out split, init, final encode),
codebook refit, first-order fit, statistics, and ``prep`` (validation + normalization).

Run: ``python bench/quantize_scale.py [--rows 1000000,4000000,32000000 --variants kmeans,mec]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import subprocess
import sys
import time

import jax
import numpy as np

from mec_jax.compression import QuantizeSettings, kmeans, pq, quantizer

LOCK = "/tmp/mec_heavy.lock"
# (module, attribute, phase): wrapped when present, so the script also times older code.
WRAPPED = (
  (kmeans, "sample_by_weight", "kmeans_sampling"),
  (kmeans, "seed_jit", "kmeans_seeding"),
  (kmeans, "_lloyd_jit", "kmeans_lloyd"),
  (kmeans, "stream_pass", "kmeans_passes"),
  (kmeans, "_kmeans_jit", "kmeans_unsplit"),
  (pq, "train_pq", "pq_total"),
  (quantizer, "check_table", "check_table"),
  (quantizer, "train_quantizer", "quantizer_total"),
  (quantizer, "refit_codebooks", "refit"),
  (quantizer, "fit_first_order", "first_order"),
  (quantizer, "reconstruction_errors", "stats"),
  (quantizer, "code_sharing", "stats"),
)


def zipf_table(rows: int, dim: int, args, chunk: int = 1 << 20):
  """``(table float32 [rows, dim], counts int64 [rows], bias float32 [rows])``, made in chunks."""
  rng = np.random.default_rng(args.seed)
  centres = rng.normal(size=(args.clusters, 8))
  mix = rng.normal(size=(8, dim)) / math.sqrt(8)
  harmonic = sum(
    float(np.sum(np.arange(s + 1, min(s + chunk, rows) + 1, dtype=np.float64) ** -args.zipf))
    for s in range(0, rows, chunk)
  )
  # Popularity rank of row i: an affine bijection of [0, rows), so ranks are scattered.
  stride = 2_654_435_761
  while math.gcd(stride, rows) != 1:
    stride += 2
  table = np.empty((rows, dim), np.float32)
  counts = np.empty(rows, np.int64)
  bias = np.empty(rows, np.float32)
  for start in range(0, rows, chunk):
    stop = min(start + chunk, rows)
    rank = (stride * np.arange(start, stop, dtype=np.int64) + 12345) % rows + 1
    lam = args.interactions_per_row * rows * rank.astype(np.float64) ** -args.zipf / harmonic
    counts[start:stop] = rng.poisson(lam)
    latent = centres[rng.integers(0, args.clusters, stop - start)]
    latent += 0.3 * rng.standard_normal((stop - start, 8))
    learned = (1.0 - np.exp(-counts[start:stop] / 5.0)).astype(np.float32)
    block = (latent @ mix).astype(np.float32) * learned[:, None]
    block += 0.3 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    table[start:stop] = 0.05 * block
    bias[start:stop] = rng.standard_normal(stop - start, dtype=np.float32)
  return table, counts, bias


def _rss_gb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 2**20
  return float("nan")


def _install_timers(seconds: dict) -> None:
  def timed(fn, phase):
    @functools.wraps(fn)
    def wrapper(*a, **k):
      start = time.perf_counter()
      out = jax.block_until_ready(fn(*a, **k))
      seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start
      return out

    return wrapper

  for module, name, phase in WRAPPED:
    if hasattr(module, name):
      setattr(module, name, timed(getattr(module, name), phase))


def child(args) -> None:
  # If the shared machine runs out of memory, this run is the one to go, not a neighbour's.
  with open("/proc/self/oom_score_adj", "w") as f:
    f.write("1000")
  start = time.perf_counter()
  table, counts, bias = zipf_table(args.rows, args.dim, args)
  generate_s = time.perf_counter() - start
  rss_table = _rss_gb()
  extra = {}
  for item in args.set:
    name, value = item.split("=", 1)
    extra[name] = type(getattr(QuantizeSettings, name))(value)
  settings = QuantizeSettings(
    variant=args.variant,
    num_subspaces=args.num_subspaces,
    codebook_size=args.codebook_size,
    seed=args.seed,
    **extra,
  )
  seconds: dict = {}
  _install_timers(seconds)
  epoch_ends = []
  start = time.perf_counter()
  cpu_start = resource.getrusage(resource.RUSAGE_SELF)
  compressed = quantizer.quantize_table(
    jax.random.key(args.seed),
    table,
    counts,
    settings,
    bias=bias,
    progress=lambda e, m: epoch_ends.append(time.perf_counter()),
  )
  total = time.perf_counter() - start
  cpu_end = resource.getrusage(resource.RUSAGE_SELF)
  cpu = cpu_end.ru_utime + cpu_end.ru_stime - cpu_start.ru_utime - cpu_start.ru_stime
  if epoch_ends:
    # Epoch 1 starts about when the k-means start of the codebooks ends.
    first = start + sum(v for k, v in seconds.items() if k in ("check_table", "pq_total"))
    seconds["epochs"] = epoch_ends[-1] - first
  if "quantizer_total" in seconds:
    inner = seconds.get("pq_total", 0.0) + seconds.get("epochs", 0.0)
    seconds["quantizer_init_encode"] = seconds.pop("quantizer_total") - inner
  named = sum(v for k, v in seconds.items() if k != "pq_total" and not k.startswith("kmeans_"))
  named += seconds.get("pq_total", 0.0)
  seconds["prep_other"] = total - named
  stats = compressed.stats
  out = {
    "rows": args.rows,
    "dim": args.dim,
    "variant": args.variant,
    "table_gb": table.nbytes / 2**30,
    "generate_s": generate_s,
    "rss_after_table_gb": rss_table,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "seconds": total,
    "cpu_seconds": cpu,
    "rows_per_s": args.rows / total,
    "phases": {k: round(v, 2) for k, v in sorted(seconds.items())},
    "epochs_run": stats.get("epochs_run", 0),
    "best_epoch": stats.get("best_epoch", 0),
    "recon_error_weighted": stats["recon_error_weighted"],
    "recon_error_weighted_relative": stats["recon_error_weighted_relative"],
    "usage_entropy": float(np.mean(compressed.usage_entropy)),
    "usage_entropy_weighted": float(np.mean(stats["usage_entropy_weighted"])),
    "train_rows_per_second": stats.get("train_rows_per_second"),
    "settings": {k: v for k, v in settings.to_dict().items() if k in ("epochs", *extra)},
    "loadavg": os.getloadavg(),
    "devices": len(jax.devices()),
  }
  print(json.dumps(out), flush=True)


def _wait_for_memory(needed_gb: float, patience_s: float = 1200.0) -> bool:
  """Waits (up to ``patience_s``) until MemAvailable covers ``needed_gb``; False if it never does."""
  deadline = time.monotonic() + patience_s
  while True:
    with open("/proc/meminfo") as f:
      available = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable"))
    if available / 2**20 >= needed_gb:
      return True
    if time.monotonic() > deadline:
      return False
    time.sleep(30)


def print_table(results: list[dict]) -> None:
  print(
    "| rows | variant | wall s | CPU s | rows/s | peak RSS GB (table) | phases s | epochs | weighted err "
    "| err / var | entropy/lnK (weighted) | load |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in results:
    phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
    print(
      f"| {r['rows']:,} | {r['variant']} | {r['seconds']:.1f} | {r.get('cpu_seconds', 0):.1f} | "
      f"{r['rows_per_s']:,.0f} | "
      f"{r['peak_rss_gb']:.2f} ({r['table_gb']:.2f}) | {phases} | {r['epochs_run']} | "
      f"{r['recon_error_weighted']:.6f} | {r['recon_error_weighted_relative']:.4f} | "
      f"{r['usage_entropy']:.4f} ({r['usage_entropy_weighted']:.4f}) | "
      f"{r['loadavg'][0]:.1f} |"
    )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rows", default="1000000,4000000,32000000")
  parser.add_argument("--variants", default="kmeans,mec")
  parser.add_argument("--dim", type=int, default=40)
  parser.add_argument("--clusters", type=int, default=32)
  parser.add_argument("--zipf", type=float, default=1.1)
  parser.add_argument("--interactions_per_row", type=float, default=20.0)
  parser.add_argument("--num_subspaces", type=int, default=4)
  parser.add_argument("--codebook_size", type=int, default=256)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--lock_rows", type=int, default=4_000_000)
  parser.add_argument(
    "--memory_factor", type=float, default=1.6, help="wait for this many tables of free memory"
  )
  parser.add_argument(
    "--set", action="append", default=[], help="extra QuantizeSettings field=value, repeatable"
  )
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--variant", default="mec", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    args.rows = int(args.rows)
    child(args)
    return
  results = []
  for rows in (int(r) for r in args.rows.split(",")):
    for variant in args.variants.split(","):
      cmd = [sys.executable, os.path.abspath(__file__), "--child", "--rows", str(rows)]
      cmd += ["--variant", variant, "--dim", str(args.dim), "--clusters", str(args.clusters)]
      cmd += ["--zipf", str(args.zipf), "--interactions_per_row", str(args.interactions_per_row)]
      cmd += ["--num_subspaces", str(args.num_subspaces), "--seed", str(args.seed)]
      cmd += ["--codebook_size", str(args.codebook_size)]
      for item in args.set:
        cmd += ["--set", item]
      if rows >= args.lock_rows:
        cmd = ["flock", LOCK, *cmd]
      # The machine is shared: do not start a run that would push it out of memory.
      needed = args.memory_factor * rows * args.dim * 4 / 2**30
      if not _wait_for_memory(needed):
        print(
          f"rows={rows} variant={variant}: skipped, less than {needed:.1f} GB free", file=sys.stderr
        )
        continue
      run = subprocess.run(cmd, capture_output=True, text=True)
      if run.returncode:
        print(f"rows={rows} variant={variant} failed:\n{run.stderr[-3000:]}", file=sys.stderr)
        continue
      results.append(json.loads(run.stdout.strip().splitlines()[-1]))
      print(json.dumps(results[-1]), file=sys.stderr, flush=True)
  print_table(results)


if __name__ == "__main__":
  main()
