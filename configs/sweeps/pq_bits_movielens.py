"""PQ's code bits per id against test AUC on MovieLens-100K, around the 25x byte budget.

Why no method comes within 0.001 of the full model at MovieLens 25x (docs/leaderboard.md): the
three compressed fields hold 2,978 ids, so 25x leaves 19,059 bytes, 51 bits an id with each
field's codebooks included. Each setting below is `pq` warm-started with stage C at a fixed
(M, K) (``compress.target_ratio = 0``: PQ keeps ``quantize.*``), from the leaderboard's stage-A
runs when the grid shares its root; ``M log2 K`` code bits an id, ``3 K 160`` codebook bytes.
(5, 16) is what ``pq`` keeps at 25x; (10, 8), (8, 14) and (5, 20) fit the budget too, (8, 16) and
(10, 16) do not (bench/RESULTS.md, "MovieLens: the bits an id that 0.001 needs").

Run: ``python -m mec_jax.experiments --config=configs/sweeps/pq_bits_movielens.py --workdir=DIR``.
"""

from configs import movielens
from configs.sweeps import SEEDS as SEEDS

SHAPES = [(5, 16), (10, 8), (8, 14), (5, 20), (8, 16), (10, 16)]  # (M, K)
SWEEP = [
  {
    "compress.method": "pq",
    "compress.target_ratio": 0.0,
    "quantize.num_subspaces": m,
    "quantize.codebook_size": k,
  }
  for m, k in SHAPES
]
FINETUNE = True


def get_config():
  return movielens.get_config()
