"""Makes the repo root importable in tests (``import configs``)."""
