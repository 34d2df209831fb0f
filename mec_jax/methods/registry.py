"""The `compress.method` values: one `Method` each, and the checks of the ``compress.*`` keys."""

from __future__ import annotations

from mec_jax.compression.rowwise import SCALE_DTYPES
from mec_jax.errors import ConfigError
from mec_jax.layers.hashed import HASH_FUNCTIONS
from mec_jax.layers.qr import COMBINES, LARGE_INDEX
from mec_jax.methods import cce, pq, pq_head, protocols, qr, robez, rowwise
from mec_jax.methods import hash as hashing
from mec_jax.methods.base import Artifact, Method
from mec_jax.train.metrics import MONITORS

REGISTRY: dict[str, Method] = {
  "pq": pq.METHOD,
  "hash": hashing.METHOD,
  "qr": qr.METHOD,
  "int8": rowwise.METHODS[8],
  "int4": rowwise.METHODS[4],
  "cce": cce.METHOD,
  "robez": robez.METHOD,
  "pq_head": pq_head.METHOD,
}
INIT_TABLES = ("stage_a", "random")


def names() -> tuple[str, ...]:
  """The registered `compress.method` values."""
  return tuple(REGISTRY)


def get(name: str) -> Method:
  """The method registered as ``name`` (ConfigError naming the choices otherwise)."""
  try:
    return REGISTRY[name]
  except KeyError:
    raise ConfigError(f"config.compress.method={name!r}; expected one of {names()}") from None


def as_artifact(table) -> Artifact:
  """``table`` as its method's `Artifact` class (e.g. a bare `CompressedTable` as a `PQTable`)."""
  return get(table.method).artifact.of(table)


def make_layer(table, *, rngs):
  """The `Table` layer of a stage-B artifact of any method."""
  return as_artifact(table).to_layer(rngs=rngs)


def validate(config) -> None:
  """Raises ConfigError naming the ``compress.*`` key that is out of range."""
  c = config.compress
  for key, value, choices in (
    ("method", c.method, (*names(), protocols.AUTO)),
    ("init_tables", c.init_tables, INIT_TABLES),
    ("hash_function", c.hash_function, HASH_FUNCTIONS),
    ("qr_combine", c.qr_combine, COMBINES),
    ("qr_large_index", c.qr_large_index, LARGE_INDEX),
    ("qr_random_init", c.qr_random_init, qr.RANDOM_INITS),
    ("scale_dtype", c.scale_dtype, SCALE_DTYPES),
    ("auto_monitor", c.auto_monitor, MONITORS),
  ):
    if value not in choices:
      raise ConfigError(f"config.compress.{key}={value!r}; expected one of {choices}")
  dim = config.model.embed_dim
  for key in ("cce_columns", "robez_blocks"):
    if not (1 <= c[key] <= dim and dim % c[key] == 0):
      raise ConfigError(f"config.compress.{key}={c[key]}; expected a divisor of embed_dim={dim}")
  protocols.check_candidates(c.auto_candidates, names())
  pq_head.head_fractions(config)  # ConfigError naming compress.head_fraction
  pq.candidate_count(config)  # ConfigError naming compress.pq_candidates
  if not c.target_ratio >= 0:
    raise ConfigError(f"config.compress.target_ratio={c.target_ratio}; expected >= 0 (0: none)")
