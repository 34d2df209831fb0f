"""``configs/sweeps/pq_head.py``'s grid (``pq_head`` against PQ at 25x and 50x) on MovieLens-100K.

Run: ``python -m mec_jax.experiments --config=configs/sweeps/pq_head_movielens.py --workdir=DIR``.
"""

from configs import movielens
from configs.sweeps import SEEDS as SEEDS
from configs.sweeps.pq_head import FINETUNE as FINETUNE
from configs.sweeps.pq_head import SWEEP as SWEEP


def get_config():
  return movielens.get_config()
