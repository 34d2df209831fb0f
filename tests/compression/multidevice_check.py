"""Run in a fresh process with 8 forced CPU devices by test_multidevice.py (not a test itself).

Checks that the row-parallel k-means and the data-parallel quantizer train step give the
single-device results, then prints OK.
"""

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from mec_jax.compression import autoencoder, training  # noqa: E402
from mec_jax.compression.kmeans import weighted_kmeans  # noqa: E402
from mec_jax.compression.mesh import auto_mesh  # noqa: E402
from mec_jax.compression.settings import QuantizeSettings  # noqa: E402
from mec_jax.mesh import data_mesh  # noqa: E402


def check_kmeans():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1001, 6)).astype(np.float32)  # not a multiple of 8: padding per device
  w = rng.integers(1, 5, 1001).astype(np.float32)
  one, eight = data_mesh(1), data_mesh(8)
  init = x[:16].copy()
  # Given init, k-means++ seeding on all rows, and on a sample (16 x 16 = 256 < 1001 rows).
  # ... and two-level (4 coarse groups, then each group's k-means on the device holding it).
  options = ({"init_centroids": init}, {}, {"max_points_per_centroid": 16}, {"max_flat_pairs": 1})
  for kwargs in options:
    a = weighted_kmeans(jax.random.key(5), x, w, 16, num_iters=10, mesh=one, **kwargs)
    b = weighted_kmeans(jax.random.key(5), x, w, 16, num_iters=10, mesh=eight, **kwargs)
    np.testing.assert_allclose(np.asarray(a.centroids), np.asarray(b.centroids), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(a.assignments), np.asarray(b.assignments))
    np.testing.assert_allclose(float(a.inertia), float(b.inertia), rtol=1e-5)


def check_train_step():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(256, 8)).astype(np.float32)
  w = rng.integers(1, 4, 256).astype(np.float32)
  settings = QuantizeSettings(num_subspaces=2, codebook_size=8)
  results = []
  for mesh in (data_mesh(1), data_mesh(8)):
    model = autoencoder.MECQuantizer(8, 8, 2, 8, rngs=nnx.Rngs(0))
    model.codebooks[...] = x[:8].reshape(8, 2, 4).transpose(1, 0, 2)  # codewords = data rows
    graphdef, params = nnx.split(model, nnx.Param)
    tx = autoencoder.make_optimizer(1e-2)
    step = autoencoder.make_train_epoch(
      graphdef, tx, training.loss_weights(settings), auto_mesh(mesh)
    )
    idx = np.arange(256, dtype=np.int32).reshape(4, 64)
    new_params, _, metrics = step(params, tx.init(params), x[idx], w[idx], jax.random.key(2))
    results.append((jax.tree.map(np.asarray, new_params), float(metrics["loss"])))
  (p1, l1), (p8, l8) = results
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5)


if __name__ == "__main__":
  assert jax.device_count() == 8, jax.devices()
  check_kmeans()
  check_train_step()
  print("OK")
