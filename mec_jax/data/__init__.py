"""Datasets: schemas, readers, encoding + cache, synthetic generator, Grain pipeline."""
