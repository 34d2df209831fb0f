"""Counts the scatter-adds of a lowered program that would run as contended atomics on a GPU.

A ``stablehlo.scatter`` whose update body adds and whose indices are not declared unique
(``unique_indices = false``) is what jaxlib 0.10.2-0.11.0 compile into a compare-and-swap loop on
GPU when it is float32 (jax #38806); integer ones are native atomics but still serialize on
repeated ids. Lower for CUDA on any host (no GPU needed) and count::

  text = jax.jit(step).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
  contended_scatter_adds(text)
"""

from __future__ import annotations

import re

_SCATTER = re.compile(
  r'"?stablehlo\.scatter"?\(.*?<\{(?P<attrs>.*?)\}>\s*\(\{(?P<body>.*?)\}\)', re.DOTALL
)


def contended_scatter_adds(stablehlo: str) -> int:
  """Number of scatter ops in StableHLO text with an add reduction and ``unique_indices = false``.

  A scatter whose body is not an add (a ``set``) or that declares its indices unique cannot
  contend.

  Args:
    stablehlo: the text of ``jax.jit(f).trace(...).lower(...).as_text()``.
  """
  count = 0
  for match in _SCATTER.finditer(stablehlo):
    unique = re.search(r"unique_indices\s*=\s*true", match["attrs"]) is not None
    adds = re.search(r"stablehlo\.add\b", match["body"]) is not None
    count += adds and not unique
  return count


def scatter_ops(stablehlo: str) -> int:
  """Number of ``stablehlo.scatter`` ops in StableHLO text (any reduction)."""
  return len(_SCATTER.findall(stablehlo))
