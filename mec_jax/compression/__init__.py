"""Stage B math: weighted k-means, product quantization, MEC losses and quantizer training.

Pure arrays in, arrays out; nothing here imports the rest of mec_jax.
"""

from mec_jax.compression.autoencoder import MECQuantizer
from mec_jax.compression.kmeans import KMeansResult, kmeans_plus_plus, weighted_kmeans
from mec_jax.compression.losses import popularity_weights
from mec_jax.compression.pq import decode, encode, train_pq
from mec_jax.compression.quantizer import quantize_table
from mec_jax.compression.refit import fit_first_order, refit_codebooks
from mec_jax.compression.settings import VARIANTS, QuantizeSettings
from mec_jax.compression.table import (
  CompressedTable,
  bits_per_code,
  code_dtype,
  packed_nbytes,
  usage_entropy,
)
from mec_jax.mesh import data_mesh

__all__ = [
  "VARIANTS",
  "CompressedTable",
  "KMeansResult",
  "MECQuantizer",
  "QuantizeSettings",
  "bits_per_code",
  "code_dtype",
  "data_mesh",
  "decode",
  "encode",
  "fit_first_order",
  "kmeans_plus_plus",
  "packed_nbytes",
  "popularity_weights",
  "quantize_table",
  "refit_codebooks",
  "train_pq",
  "usage_entropy",
  "weighted_kmeans",
]
