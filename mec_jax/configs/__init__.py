"""Built-in configs: ``default`` (every key, with its default) and one file per dataset.

They ship with the package, so ``python -m mec_jax.main --config=<name>`` works after a plain
``pip install`` from any directory. In Python: ``from mec_jax.configs import synthetic`` then
``synthetic.get_config()``. A config of your own is a file with ``get_config()`` that starts from
one of these (``from mec_jax.configs import frappe``) and is passed as ``--config=path/to/file.py``.
"""

from __future__ import annotations

import pkgutil


def builtin_names() -> list[str]:
  """Names ``--config`` accepts without a path (``default`` and one per dataset), sorted."""
  return sorted(module.name for module in pkgutil.iter_modules(__path__))
