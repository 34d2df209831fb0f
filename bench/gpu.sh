#!/usr/bin/env bash
# Issue 20's accelerator check of mec_jax in one command (bench/gpu_check.py does the work).
#
#   bash bench/gpu.sh            # on an H100/H200 machine: <= 8 minutes, no internet needed
#   bash bench/gpu.sh --cpu      # the same sections at tiny sizes on the CPU (CI runs this)
#   bash bench/gpu.sh --only deepfm,loader   # extra arguments go to bench/gpu_check.py
#
# The machine's python must hold jax (with its CUDA plugin), flax, optax, orbax-checkpoint, chex,
# numpy, pandas, pyarrow, absl-py and scikit-learn. grain and ml_collections, when missing, are
# installed from bench/wheels/ without the network; fill that folder beforehand on a machine
# with internet (it is git-ignored):
#
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_28_x86_64 -d bench/wheels grain ml_collections
#
# (22 MB with their dependencies; those the machine already has are not reinstalled. The wheels
# are for CPython 3.12: change --python-version to the machine's.) Exits non-zero if a section failed or JAX sees no accelerator (without --cpu).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # so the peak memory is what each step needs
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
PYTHON="${PYTHON:-python3}"

if [[ "${1:-}" == "--cpu" ]]; then
  export JAX_PLATFORMS=cpu
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
fi

if ! "$PYTHON" -c "import grain, ml_collections" 2>/dev/null; then
  if [[ -d bench/wheels ]]; then
    echo "bench/gpu.sh: installing grain / ml_collections from bench/wheels (no network)"
    "$PYTHON" -m pip install --quiet --no-index --find-links bench/wheels grain ml_collections \
      || { echo "bench/gpu.sh: pip install from bench/wheels failed" >&2; exit 2; }
  else
    echo "bench/gpu.sh: grain or ml_collections missing and no bench/wheels/ (see the header)" >&2
    exit 2
  fi
fi

if [[ "${1:-}" != "--cpu" ]] && ! "$PYTHON" -c "import jax; assert jax.devices()[0].platform != 'cpu'" 2>/dev/null; then
  echo "bench/gpu.sh: JAX sees no accelerator (need a CUDA jaxlib; or run with --cpu)" >&2
  exit 1
fi
exec "$PYTHON" bench/gpu_check.py "$@"
