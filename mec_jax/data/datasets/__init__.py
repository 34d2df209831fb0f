"""Dataset readers, one per file."""
