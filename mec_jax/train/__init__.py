"""Training loop, steps, metrics, checkpointing, mesh."""
