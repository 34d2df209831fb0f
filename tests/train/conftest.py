"""Shares compiled XLA programs between the many identical `fit` calls of these tests."""

import tempfile

import jax
import pytest


@pytest.fixture(scope="session", autouse=True)
def compilation_cache():
  with tempfile.TemporaryDirectory() as cache_dir:
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    jax.config.update("jax_compilation_cache_dir", None)
