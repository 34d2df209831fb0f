"""How a compression method is trained (its protocol), and the candidate names of
``compress.method=auto`` (`mec_jax.auto`).

A **protocol** is a set of flat config overrides applied on top of a method:

* ``warm`` (no overrides): the pipeline's normal protocol; stage B starts from stage A's tables and
  stage C from stage A's weights (DESIGN §3).
* ``scratch`` (`FROM_SCRATCH`): as the hashing trick's users train it; random tables, a fresh
  backbone, every weight trained at ``train.learning_rate`` (DESIGN §10).

A **candidate** of ``compress.auto_candidates`` is ``"<method>"`` (warm) or ``"<method>:scratch"``,
``<method>`` a registered ``compress.method`` other than ``auto``. The leaderboard grids
(``configs/sweeps``) use the same `FROM_SCRATCH`, so an auto candidate is a grid cell.
"""

from __future__ import annotations

from mec_jax.errors import ConfigError

AUTO = "auto"  # the compress.method that picks among compress.auto_candidates (mec_jax.auto)
FROM_SCRATCH = {  # as the hashing trick's users train it: random tables, a fresh backbone
  "compress.init_tables": "random",
  "finetune.init_from_pretrain": False,
  "finetune.codebook_learning_rate": 0.0,
}
PROTOCOLS = {"warm": {}, "scratch": FROM_SCRATCH}
_KEY = "config.compress.auto_candidates"


def parse(candidate: str) -> tuple[str, dict]:
  """``(method, overrides)`` of a candidate name: ``"cce"`` -> ``("cce", {})``,
  ``"hash:scratch"`` -> ``("hash", FROM_SCRATCH)`` (the method is not checked here)."""
  method, _, protocol = candidate.partition(":")
  overrides = PROTOCOLS.get(protocol or "warm")
  if overrides is None or protocol == "warm":  # "<method>" is the warm protocol's one spelling
    raise ConfigError(
      f"{_KEY}: {candidate!r} has protocol {protocol!r}; expected '<method>' or '<method>:scratch'"
    )
  return method, dict(overrides)


def name_of(overrides: dict) -> str | None:
  """The candidate name of a grid cell's overrides, the inverse of `parse`:
  ``{"compress.method": "hash", "compress.target_ratio": 25.0} | FROM_SCRATCH`` ->
  ``"hash:scratch"``; None when other overrides make the cell no candidate."""
  method = overrides.get("compress.method", "pq")
  rest = {
    k: v for k, v in overrides.items() if k not in ("compress.method", "compress.target_ratio")
  }
  for protocol, extra in PROTOCOLS.items():
    if rest == extra:
      return method if protocol == "warm" else f"{method}:{protocol}"
  return None


def check_candidates(candidates, methods: tuple[str, ...]) -> None:
  """Raises a one-line ConfigError naming `compress.auto_candidates` and its bad value.

  Args:
    candidates: the value of ``compress.auto_candidates`` (a tuple or list of names).
    methods: the registered ``compress.method`` values (`registry.names`).
  """
  if isinstance(candidates, str) or not isinstance(candidates, (tuple, list)) or not candidates:
    raise ConfigError(
      f"{_KEY}={candidates!r}; expected a non-empty tuple of '<method>' or '<method>:scratch'"
    )
  for name in candidates:
    if not isinstance(name, str):
      raise ConfigError(f"{_KEY}: {name!r} is not a string; expected '<method>[:scratch]'")
    method, _ = parse(name)
    if method not in methods:  # "auto" is not registered, so it is refused here too
      raise ConfigError(f"{_KEY}: {name!r} names method {method!r}; expected one of {methods}")
  repeated = sorted({n for n in candidates if list(candidates).count(n) > 1})
  if repeated:
    raise ConfigError(f"{_KEY}: {repeated[0]!r} is listed twice")
