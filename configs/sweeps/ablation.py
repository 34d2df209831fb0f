"""Stage-B ablation at the AUC level: every quantizer variant at two PQ settings (issue 22).

Run: ``python bench/ablation.py`` (several datasets, the paired table of bench/RESULTS.md,
"Stage-B ablation") or, for the synthetic default alone and the grid's own table,
``python -m mec_jax.experiments --config=configs/sweeps/ablation.py --workdir=DIR``.

A cell is one (setting, variant): PQ at ``quantize.num_subspaces`` x ``quantize.codebook_size``
(bytes from those, ``compress.target_ratio = 0``) with ``quantize.variant``, plus any other
overrides (`cell`). Stage B and the swap-in (stage-A weights with the compressed tables) only
(``FINETUNE = False``); bench/ablation.py runs stage C for the cells it is asked to. Every cell
sets ``finetune.init_from_pretrain = False``: where stage C runs it is the paper's (a fresh
backbone on the frozen codes).
"""

from __future__ import annotations

import importlib

from configs.sweeps import SEEDS as SEEDS

SETTINGS = {"m2k256": (2, 256), "m4k64": (4, 64)}  # name -> (num_subspaces, codebook_size)
VARIANTS = ("mec", "no_pwr", "no_balance", "no_contrastive", "kmeans", "reference")
DATASETS = ("synthetic", "frappe", "movielens")  # configs/<name>.py; bench/ablation.py's default


def cell(setting: str, variant: str, **overrides) -> dict:
  """The overrides of one cell: ``setting`` (a `SETTINGS` key), ``variant`` (a quantizer
  variant) and more flat ``section.key`` overrides (``**{"quantize.selection": "error"}``)."""
  num_subspaces, codebook_size = SETTINGS[setting]
  return {
    "compress.method": "pq",
    "quantize.num_subspaces": num_subspaces,
    "quantize.codebook_size": codebook_size,
    "quantize.variant": variant,
    "finetune.init_from_pretrain": False,
  } | overrides


SWEEP = [cell(setting, variant) for setting in SETTINGS for variant in VARIANTS]
FINETUNE = False


def config_for(dataset: str):
  """The base config of the grid on ``dataset`` (``configs/<dataset>.py``)."""
  return importlib.import_module(f"configs.{dataset}").get_config()


def get_config():
  return config_for("synthetic")
