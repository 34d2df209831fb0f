"""mec_jax: Model-agnostic Embedding Compression (MEC) for CTR prediction in JAX / Flax NNX."""

__version__ = "0.1.0"
