"""What the bench scripts share: the checkout's paths, and its ``configs`` package made importable.

Bench scripts run from a checkout as ``python bench/<name>.py``: ``mec_jax`` comes from the
(editable) install, ``bench/`` is the script's own directory (so ``import _common`` and sibling
helpers such as ``torch_deepfm`` import as they are), but the dataset configs are the top-level
``configs`` package, which ``pip install`` does not install. A script that imports ``configs``
imports this module first; it is the one place that puts the checkout on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO.parent / "shared" / "data"  # the small real datasets, beside the checkout

if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))
