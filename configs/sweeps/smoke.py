"""A seconds-long grid for tests: every method on configs/smoke.py, two seeds, one budget."""

from configs import smoke

SEEDS = [0, 1]
SWEEP = [
  {"compress.method": "pq", "compress.target_ratio": 4.0},
  {"compress.method": "hash", "compress.target_ratio": 4.0},
  {"compress.method": "qr", "compress.target_ratio": 4.0},
  {"compress.method": "qr", "compress.target_ratio": 40.0},  # below QR's floor: infeasible
  {"compress.method": "int8"},
  {"compress.method": "int4"},
]


def get_config():
  config = smoke.get_config()
  config.train.epochs = 1
  return config
