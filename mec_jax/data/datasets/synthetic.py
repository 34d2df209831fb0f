"""The ``synthetic`` dataset: `mec_jax.data.synthetic.generate`, split at random.

No files: ``data.synthetic.*`` configures the generator and ``data.split_fractions`` /
``data.split_seed`` the split. The raw integer columns then take the ordinary encoding path
(train-only vocabulary, OOV for values drawn only in valid/test).
"""

from __future__ import annotations

from mec_jax.data import synthetic
from mec_jax.data.raw import RawData, random_split

VERSION = 1
CONFIG_KEYS = ("synthetic", "split_fractions", "split_seed")


def read(data_config) -> RawData:
  spec = synthetic.SyntheticSpec.from_config(data_config.synthetic)
  frame, _, _ = synthetic.generate(spec)
  splits = random_split(frame, data_config.split_fractions, int(data_config.split_seed))
  fields = spec.categorical_names + spec.numeric_names
  return RawData("synthetic", splits, fields, numeric=spec.numeric_names)
