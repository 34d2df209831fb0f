"""Compression methods (`compress.method`): one module each, one registry, one protocol.

* `base`: the `Artifact` protocol every method's per-field product implements, `Method`, and the
  stage-B loop they share; `budget`: byte budgets (``compress.target_ratio``).
* `pq` (MEC and its variants), `hash`, `qr`, `rowwise` (``int8``/``int4``): the methods.
* `registry`: ``{name: Method}`` and the checks of ``compress.*``.
* `protocols`: warm start or from scratch (`FROM_SCRATCH`), and ``compress.auto_candidates`` names.

Adding a method is one module and one `REGISTRY` entry (docs/methods.md).
"""

from mec_jax.methods import protocols
from mec_jax.methods.base import Artifact, Method, StageB, build_each, load_each
from mec_jax.methods.budget import budget_bytes, plan_pq, plan_qr, pq_bytes, pq_config
from mec_jax.methods.registry import REGISTRY, as_artifact, get, make_layer, names, validate

__all__ = [
  "REGISTRY",
  "Artifact",
  "Method",
  "StageB",
  "as_artifact",
  "budget_bytes",
  "build_each",
  "get",
  "load_each",
  "make_layer",
  "names",
  "plan_pq",
  "plan_qr",
  "pq_bytes",
  "pq_config",
  "protocols",
  "validate",
]
