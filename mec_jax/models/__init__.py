"""CTR backbones, one per file, and the registry."""
