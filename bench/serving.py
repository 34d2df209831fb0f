"""Serving: latency and resident memory of the exported compressed model vs the exported full one.

Each export (``<workdir>/export`` and ``<workdir>/export/full``, written by the pipeline) is loaded
with `mec_jax.export.load` in a fresh subprocess, so its resident set is its own: the child imports
jax and numpy only, notes its RSS, loads the model, serves one warm-up request per batch size
(compiling it), then times ``--repeats`` requests per size. Children alternate (compressed, full,
compressed, full, ...) over ``--rounds`` so load drift from other processes hits both alike; the
best median per size is reported.

  python bench/serving.py [--workdir DIR] [--batches 1,64,4096] [--repeats 50] [--rounds 2]

Without ``--workdir`` it uses (and, the first time, builds with ``configs/synthetic.py``; minutes)
``/tmp/mec_serving_synthetic``. ``--build_vocab 2000000,500000,1000,100`` instead exports an untrained
DeepFM pair of that shape into ``--workdir`` (serving cost does not depend on the weights).

``--raw_vocab 1000000,100000,10000,1000,100,10`` instead measures raw-row serving
(`ServedModel.predict_raw`) on a Criteo-shaped export written into ``--workdir``/raw: 13 numeric
fields and 26 categorical fields of 8-hex-digit string values (the sizes cycled over the 26), an
untrained DeepFM with the fields >= 1000 ids compressed (M=2, K=256). It prints the export's size
on disk with and without ``vocab.npz`` and rows/s of ``predict_raw`` on raw string columns (5%
blanks, 5% unseen values) beside today's ids path (``model(ids, values)`` on encoded rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKDIR = "/tmp/mec_serving_synthetic"


def _rss_bytes() -> int:
  with open("/proc/self/status") as fh:
    for line in fh:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) * 1024
  raise RuntimeError("no VmRSS in /proc/self/status")


def child(directory: str, batches: list[int], repeats: int) -> dict:
  """Runs in the subprocess: load, warm up, time. Imports only jax, numpy and mec_jax.export."""
  import jax
  import numpy as np

  jax.block_until_ready(jax.numpy.zeros(8) + 1)  # the CPU client and a first program exist
  baseline = _rss_bytes()
  from mec_jax import export

  start = time.perf_counter()
  model = export.load(directory)
  load_seconds = time.perf_counter() - start
  after_load = _rss_bytes()
  rng = np.random.default_rng(0)
  out = {"param_bytes": model.param_bytes, "load_seconds": load_seconds, "latency_ms": {}}
  for batch in batches:
    ids = np.stack([rng.integers(0, v, batch) for v in model.vocab_sizes], 1).astype(np.int32)
    values = np.ones(ids.shape, np.float32)
    start = time.perf_counter()
    jax.block_until_ready(model(ids, values))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(model(ids, values))
      times.append(time.perf_counter() - start)
    out["latency_ms"][str(batch)] = {
      "first": 1e3 * first,
      "median": 1e3 * float(np.median(times)),
      "p90": 1e3 * float(np.percentile(times, 90)),
    }
  out |= {
    "rss_jax_bytes": baseline,
    "rss_model_bytes": after_load - baseline,
    "rss_serving_bytes": _rss_bytes() - baseline,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "loadavg": os.getloadavg(),
  }
  return out


def _measure(directory, batches, repeats) -> dict:
  proc = subprocess.run(
    [
      sys.executable,
      __file__,
      "--child",
      directory,
      "--batches",
      ",".join(map(str, batches)),
      "--repeats",
      str(repeats),
    ],  # fmt: skip
    capture_output=True,
    text=True,
    check=False,
    env={**os.environ, "PYTHONPATH": REPO},
  )
  if proc.returncode:
    raise SystemExit(f"child for {directory} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_export(workdir: str) -> None:
  if os.path.isfile(os.path.join(workdir, "export", "full", "manifest.json")):
    return
  stage = "export" if os.path.isfile(os.path.join(workdir, "report.json")) else "all"
  print(f"building {workdir} (configs/synthetic.py, stage={stage}) ...", flush=True)
  subprocess.run(
    [
      sys.executable,
      "-m",
      "mec_jax.main",
      f"--config={REPO}/configs/synthetic.py",
      f"--workdir={workdir}",
      f"--config.stage={stage}",
      "--config.train.progress=False",
    ],  # fmt: skip
    check=True,
    env={**os.environ, "PYTHONPATH": REPO},
  )


def build_random(workdir: str, vocab_sizes: list[int], dim: int, num_subspaces: int) -> None:
  """Exports an untrained DeepFM pair (full tables / CodebookEmbed with K=256 on fields >= 1000 ids).

  Serving cost does not depend on the weights' values, so this measures a Criteo-sized table
  without training one. Writes ``export/``, ``export/full/`` and a minimal ``report.json``.
  """
  from flax import nnx

  from configs import default
  from mec_jax import model_factory
  from mec_jax.export import writer
  from mec_jax.layers import CodebookEmbed
  from mec_jax.layers.embed import Embed

  config = default.get_config()
  config.model.embed_dim = dim
  rngs = nnx.Rngs(0)
  full = [Embed(v, dim, rngs=rngs) for v in vocab_sizes]
  small = lambda v: Embed(v, dim, rngs=rngs)
  pq = lambda v: CodebookEmbed(v, num_subspaces, 256, dim // num_subspaces, rngs=rngs)
  compressed = [pq(v) if v >= 1000 else small(v) for v in vocab_sizes]
  names = [f"f{i}" for i in range(len(vocab_sizes))]
  export_dir = os.path.join(workdir, "export")
  writer.export_model(
    model_factory.build_model("deepfm", compressed, config, 0), export_dir, field_names=names
  )
  writer.export_model(
    model_factory.build_model("deepfm", full, config, 0),
    os.path.join(export_dir, "full"),
    field_names=names,
  )
  report = {"dataset": f"random, vocab {vocab_sizes}", "model": "deepfm (untrained)"}
  with open(os.path.join(workdir, "report.json"), "w") as fh:
    json.dump(report, fh)


def _hex_keys(rng, count: int):
  import numpy as np

  keys = np.unique(rng.integers(0, 2**32, int(count * 1.01) + 16, dtype=np.uint64))
  rng.shuffle(keys)
  return np.char.mod("%08x", keys[:count]).astype(str)


def raw_bench(workdir: str, sizes: list[int], dim: int, num_subspaces: int, rows: int) -> None:
  """Writes a Criteo-shaped export with vocabularies; prints its size and predict_raw rows/s."""
  import jax
  import numpy as np
  from flax import nnx

  from configs import default
  from mec_jax import export, pipeline
  from mec_jax.export import writer
  from mec_jax.layers import CodebookEmbed
  from mec_jax.layers.embed import Embed

  rng = np.random.default_rng(0)
  numeric = [f"I{i}" for i in range(1, 14)]
  categorical = [f"C{i}" for i in range(1, 27)]
  vocab = {name: sizes[i % len(sizes)] for i, name in enumerate(categorical)}
  config = default.get_config()
  config.model.embed_dim = dim
  rngs = nnx.Rngs(0)
  tables = [Embed(1, dim, rngs=rngs) for _ in numeric]
  spec, arrays = {"dataset": "criteo-shaped", "fields": []}, {}
  for name in numeric:
    spec["fields"].append({"name": name, "kind": "numeric", "number_dtype": "float32",
                           "mode": "log", "mean": 1.5, "std": 1.2})  # fmt: skip
  keys_of = {}
  for j, name in enumerate(categorical, start=len(numeric)):
    v = vocab[name]
    keys_of[name] = _hex_keys(rng, v - 1)  # id v - 1 is the OOV id
    arrays[f"f{j:03d}_keys"] = keys_of[name]
    arrays[f"f{j:03d}_ids"] = np.arange(v - 1, dtype=np.int32)
    spec["fields"].append({"name": name, "kind": "categorical", "mode": "vocabulary",
                           "vocab_size": v, "oov_id": v - 1, "missing_id": v - 1,
                           "missing_key": "", "keys": f"f{j:03d}_keys", "ids": f"f{j:03d}_ids"})  # fmt: skip
    small = v < 1000
    tables.append(
      Embed(v, dim, rngs=rngs)
      if small
      else CodebookEmbed(v, num_subspaces, 256, dim // num_subspaces, rngs=rngs)
    )
  directory = os.path.join(workdir, "raw")
  names = numeric + categorical
  start = time.perf_counter()
  writer.export_model(
    pipeline.build_model("deepfm", tables, config, 0), directory, field_names=names,
    preprocess=(spec, arrays),
  )  # fmt: skip
  write_seconds = time.perf_counter() - start
  sizes_on_disk = {f: os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)}
  total = sum(sizes_on_disk.values())
  start = time.perf_counter()
  model = export.load(directory)
  load_seconds = time.perf_counter() - start
  raw = {}
  for name in numeric:
    x = np.floor(np.exp(rng.exponential(1.5, rows))).astype(np.int64).astype(str)
    raw[name] = np.where(rng.random(rows) < 0.05, "", x).tolist()
  for name in categorical:
    keys = keys_of[name]
    pick = keys[np.minimum(rng.zipf(1.2, rows) - 1, len(keys) - 1)]
    u = rng.random(rows)
    raw[name] = np.where(u < 0.05, "", np.where(u > 0.95, "ffffffffx", pick)).tolist()
  ids, values = model.encode_raw(raw)
  jax.block_until_ready(model(ids, values))  # compile for this batch size
  model.predict_raw(raw)

  def rate(fn, repeats=5):
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times.append(time.perf_counter() - start)
    return rows / float(np.median(times))

  raw_rate = rate(lambda: model.predict_raw(raw))
  ndarray_raw = {k: np.asarray(v) for k, v in raw.items()}
  array_rate = rate(lambda: model.predict_raw(ndarray_raw))
  encode_rate = rate(lambda: model.encode_raw(ndarray_raw)[0])
  ids_rate = rate(lambda: model(ids, values))
  print(f"Criteo-shaped export: 13 numeric + 26 categorical fields, vocab sizes {sizes} cycled, "
        f"d={dim}, M={num_subspaces}, K=256; batch {rows}; load average {os.getloadavg()}")  # fmt: skip
  print()
  print("| | value |")
  print("|---|---|")
  print(f"| export on disk, with vocabularies | {_mib(total)} |")
  print(f"| export on disk, without vocabularies | {_mib(total - sizes_on_disk['vocab.npz'])} |")
  print(f"| of which `vocab.npz` ({sum(vocab.values()) - 26} keys) | "
        f"{_mib(sizes_on_disk['vocab.npz'])} |")  # fmt: skip
  print(f"| `params.npz` | {_mib(sizes_on_disk['params.npz'])} |")
  print(f"| write / load (digests checked) | {write_seconds:.2f} s / {load_seconds:.2f} s |")
  print(f"| predict_raw, columns as Python lists of str | {raw_rate:,.0f} rows/s |")
  print(f"| predict_raw, columns as numpy str arrays | {array_rate:,.0f} rows/s |")
  print(f"| of which encode_raw (numpy str arrays) | {encode_rate:,.0f} rows/s |")
  print(f"| ids path `model(ids, values)` on encoded rows | {ids_rate:,.0f} rows/s |")


def _mib(n: float) -> str:
  return f"{n / 2**20:.1f} MiB"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
  parser.add_argument("--batches", default="1,64,4096")
  parser.add_argument("--repeats", type=int, default=50)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument(
    "--build_vocab", default="", help="comma list: export untrained models with these vocab sizes"
  )
  parser.add_argument("--dim", type=int, default=40)
  parser.add_argument("--num_subspaces", type=int, default=2)
  parser.add_argument("--raw_vocab", default="", help="comma list: predict_raw on Criteo shape")
  parser.add_argument("--raw_rows", type=int, default=4096)
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  batches = [int(b) for b in args.batches.split(",")]
  if args.child:
    print(json.dumps(child(args.child, batches, args.repeats)))
    return
  if args.raw_vocab:
    sizes = [int(v) for v in args.raw_vocab.split(",")]
    raw_bench(args.workdir, sizes, args.dim, args.num_subspaces, args.raw_rows)
    return
  if args.build_vocab:
    vocab = [int(v) for v in args.build_vocab.split(",")]
    build_random(args.workdir, vocab, args.dim, args.num_subspaces)
  ensure_export(args.workdir)
  dirs = {
    "compressed": os.path.join(args.workdir, "export"),
    "full": os.path.join(args.workdir, "export", "full"),
  }
  runs = {name: [] for name in dirs}
  for _ in range(args.rounds):
    for name, directory in dirs.items():
      runs[name].append(_measure(directory, batches, args.repeats))
  best = {}
  for name, results in runs.items():
    best[name] = results[0] | {
      "latency_ms": {
        str(b): min((r["latency_ms"][str(b)] for r in results), key=lambda x: x["median"])
        for b in batches
      },
      "rss_model_bytes": min(r["rss_model_bytes"] for r in results),
      "rss_serving_bytes": min(r["rss_serving_bytes"] for r in results),
    }
  with open(os.path.join(args.workdir, "report.json")) as fh:
    report = json.load(fh)
  c, f = best["compressed"], best["full"]
  print(f"workdir {args.workdir}; dataset {report['dataset']}, model {report['model']}; "
        f"loadavg during the runs {[r['loadavg'][0] for rs in runs.values() for r in rs]}")  # fmt: skip
  if report.get("full") and report.get("compressed"):
    print(f"test AUC: full {report['full']['test_auc']:.4f}, compressed "
          f"{report['compressed']['test_auc']:.4f} ({report['compressed']['source']})")  # fmt: skip
  print()
  print("| | full | compressed | full / compressed |")
  print("|---|---|---|---|")
  for key, label in (
    ("param_bytes", "arrays of the model (params.npz)"),
    ("rss_model_bytes", "resident after load (RSS - RSS of a warm jax)"),
    ("rss_serving_bytes", "resident after serving every batch size"),
  ):
    print(f"| {label} | {_mib(f[key])} | {_mib(c[key])} | {f[key] / max(c[key], 1):.1f}x |")
  print(
    f"| RSS of a warm jax + numpy alone | {_mib(f['rss_jax_bytes'])} | {_mib(c['rss_jax_bytes'])} | |"
  )
  for b in batches:
    lf, lc = f["latency_ms"][str(b)], c["latency_ms"][str(b)]
    print(
      f"| latency, batch {b} (median / p90) | {lf['median']:.3f} / {lf['p90']:.3f} ms "
      f"| {lc['median']:.3f} / {lc['p90']:.3f} ms | {lf['median'] / lc['median']:.2f}x |"
    )
  for b in batches:
    lf, lc = f["latency_ms"][str(b)], c["latency_ms"][str(b)]
    print(
      f"| first request, batch {b} (compiles) | {lf['first']:.0f} ms | {lc['first']:.0f} ms | |"
    )
  print(f"| load | {f['load_seconds']:.2f} s | {c['load_seconds']:.2f} s | |")


if __name__ == "__main__":
  main()
