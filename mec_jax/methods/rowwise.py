"""``int8`` / ``int4``: row-wise post-training quantization (`mec_jax.layers.rowwise`).

Every row keeps its own scale and offset (``compress.scale_dtype``), the TorchRec inference
default; the ratio is fixed by the bit width, so ``compress.target_ratio`` is ignored. Stage C
trains the scales and offsets; the quantized values stay.
"""

from __future__ import annotations

import functools

import numpy as np

from mec_jax.compression.rowwise import pack_int4, quantize_rows, round_to, unpack_int4
from mec_jax.layers.rowwise import RowwiseTable
from mec_jax.methods import base, files


class RowwiseArtifact(files.Stored, RowwiseTable):
  """A `RowwiseTable` implementing `mec_jax.methods.base.Artifact` (int4 values are packed two
  per byte on disk)."""

  trainable_params = ("row_scale", "row_offset")

  def with_layer(self, layer, **stats) -> RowwiseArtifact:
    """Scales and offsets as the layer uses them (rounded to ``scale_dtype``)."""
    del stats
    stored = functools.partial(round_to, scale_dtype=self.scale_dtype)
    art = files.with_params(self, layer, {"row_scale": "scale", "row_offset": "offset"}, stored)
    return files.with_params(art, layer, {"rowwise_first_order": "first_order"})

  def save(self, path: str) -> None:
    if self.bits == 4:  # two values per byte on disk too
      files.save_dataclass(path, self, {"values": pack_int4(self.values)}, dim=self.dim)
    else:
      files.save_dataclass(path, self)

  @classmethod
  def load(cls, path: str) -> RowwiseArtifact:
    arrays, meta = files.load_dataclass(path, "int8", "int4")
    if meta.get("bits") == 4:
      arrays["values"] = unpack_int4(arrays["values"], meta.pop("dim"))
    return files.build_dataclass(cls, arrays, meta)


def build_field(spec, table, bias, config, bits: int) -> RowwiseArtifact:
  """The ``bits``-bit row-wise quantized table of one field from stage A's ``table [V, d]``."""
  dtype = config.compress.scale_dtype
  values, scale, offset = (np.asarray(a) for a in quantize_rows(table, bits, dtype))
  return RowwiseArtifact(values, scale, offset, bias, bits, dtype, spec.name)


def _build(bits: int, config, feature_map, ctx: base.StageB) -> dict[str, RowwiseArtifact]:
  def make(position, spec, table, bias, counts, seed):
    del position, counts, seed
    return build_field(spec, table, bias, config, bits)

  return base.build_from_stage_a(METHODS[bits], config, feature_map, ctx, make)


METHODS = {
  bits: base.Method(
    f"int{bits}",
    RowwiseArtifact,
    functools.partial(_build, bits),
    config_keys=("scale_dtype", "hash_seed"),
  )
  for bits in (8, 4)
}
