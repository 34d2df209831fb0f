"""Servable artifacts of a finished run: the forward pass via `jax.export`, loadable without mec_jax's
training code.

  from mec_jax import export
  model = export.load("<workdir>/export")      # jax + numpy only, no flax
  logits = model(ids, values)                  # [batch], any batch size

`mec_jax.export.writer` (which needs flax) writes these directories; `mec_jax.pipeline` calls it at
the end of ``--config.stage=all`` and for ``--config.stage=export``. `load` verifies every file
against the SHA-256 digests the manifest records and raises one `ArtifactError` naming the file
and what differs; ids outside a field's vocabulary (any integer width) read its OOV row.
"""

from mec_jax.export.serving import ServedModel, load, read_manifest

__all__ = ["ServedModel", "load", "read_manifest"]
