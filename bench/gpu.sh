#!/usr/bin/env bash
# Step-time table of bench/vocab_scaling.py on a GPU (mec_jax dense vs row-sparse tables).
#
#   bash bench/gpu.sh [sizes]        # default sizes 1e4,1e5,1e6,1e7
#
# Needs a CUDA build of jaxlib (pip install "jax[cuda12]"); installs nothing itself. Exits 1 with a
# message when JAX sees no GPU. Peak memory is the device's peak_bytes_in_use (jax_* rows); the
# PyTorch rows are the CPU baseline and are left out here.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export JAX_PLATFORMS=cuda
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # so the peak memory is what the step needs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if ! python -c "import jax; assert jax.devices()[0].platform == 'gpu'" 2>/dev/null; then
  echo "bench/gpu.sh: JAX sees no GPU (need a CUDA jaxlib, e.g. pip install 'jax[cuda12]')" >&2
  exit 1
fi
python -c "import jax; print('jax', jax.__version__, jax.devices())"
python bench/vocab_scaling.py --sizes "${1:-1e4,1e5,1e6,1e7}" \
  --impls jax_dense,jax_adagrad,jax_lazy_adam --steps 50 --warmup 5
