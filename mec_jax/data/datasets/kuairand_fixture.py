"""`write_tiny_kuairand`: a small KuaiRand directory in the real schema, for tests and demos.

It writes every file the KuaiRand reader looks at (and the random log it ignores) with the
column names and value formats of the public release, so a test of the reader, or an
end-to-end run of the pipeline, exercises the real parsing path without the 100 MB download.
Clicks follow a planted logistic model (user bias + video bias + hour effect), so a CTR model
trained on the tiny set can beat AUC 0.5. A few logged videos are absent from the video table,
as in the real data, so the left join's missing side features are exercised too.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

_LOG_COLUMNS = [
  "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
  "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
  "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab",
]  # fmt: skip
_RANGES = ["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "500+"]


def write_tiny_kuairand(root: str, variant: str = "1k", num_rows: int = 2000, seed: int = 0) -> str:
  """Writes ``<root>/data/*.csv`` in the KuaiRand layout and returns ``root``.

  Args:
    root: directory to create (the KuaiRand root; point ``data.dir`` at it).
    variant: ``"pure"``, ``"1k"`` or ``"27k"`` (27k writes ``_part1``/``_part2`` log files).
    num_rows: log rows over both periods (dates 2022-04-08 .. 2022-05-08, so the default time
      split gives non-empty train, valid and test).
    seed: seed of the generated content.
  """
  if variant not in ("pure", "1k", "27k"):
    raise ValueError(f"variant must be 'pure', '1k' or '27k', got {variant!r}")
  rng = np.random.default_rng(seed)
  data = os.path.join(root, "data")
  os.makedirs(data, exist_ok=True)
  num_users, num_videos = max(8, num_rows // 40), max(16, num_rows // 8)
  user_ids = np.sort(rng.choice(100_000, num_users, replace=False))
  video_ids = np.sort(rng.choice(10_000_000, num_videos, replace=False))
  # Zipf-like popularity so that some videos are frequent and many are rare.
  popularity = 1.0 / np.arange(1, num_videos + 1) ** 1.1
  video_pick = rng.choice(num_videos, num_rows, p=popularity / popularity.sum())
  user_pick = rng.integers(0, num_users, num_rows)
  days = pd.date_range("2022-04-08", "2022-05-08").strftime("%Y%m%d").astype(int).to_numpy()
  date = np.sort(rng.choice(days, num_rows))
  hour = rng.integers(0, 24, num_rows)
  user_bias, video_bias = rng.normal(0, 1, num_users), rng.normal(0, 1.5, num_videos)
  logit = -1.0 + user_bias[user_pick] + video_bias[video_pick] + 0.5 * np.sin(hour / 4.0)
  click = (rng.random(num_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
  duration = rng.integers(5_000, 300_000, num_videos)
  log = pd.DataFrame(
    {
      "user_id": user_ids[user_pick],
      "video_id": video_ids[video_pick],
      "date": date,
      "hourmin": hour * 100 + rng.integers(0, 60, num_rows),
      "time_ms": 1_649_376_000_000 + np.arange(num_rows) * 1000,
      "is_click": click,
      "play_time_ms": click * rng.integers(0, 60_000, num_rows),
      "duration_ms": duration[video_pick],
      "is_rand": 0,
      "tab": rng.choice([0, 1, 2, 4, 6], num_rows),
    }
  )
  for col in _LOG_COLUMNS:
    if col not in log:
      log[col] = (rng.random(num_rows) < 0.05).astype(int) * click
  log = log[_LOG_COLUMNS]
  first = log["date"] <= 20220421
  for period, part in (("4_08_to_4_21", log[first]), ("4_22_to_5_08", log[~first])):
    stem = os.path.join(data, f"log_standard_{period}_{variant}")
    if variant == "27k":
      half = len(part) // 2
      part.iloc[:half].to_csv(f"{stem}_part1.csv", index=False)
      part.iloc[half:].to_csv(f"{stem}_part2.csv", index=False)
    else:
      part.to_csv(f"{stem}.csv", index=False)
  log[~first].head(50).assign(is_rand=1).to_csv(
    os.path.join(data, f"log_random_4_22_to_5_08_{variant}.csv"), index=False
  )
  _user_table(rng, user_ids).to_csv(os.path.join(data, f"user_features_{variant}.csv"), index=False)
  # Two fairly popular videos are left out of the video table (missing side features).
  keep = np.ones(num_videos, dtype=bool)
  keep[[3, 7]] = False
  _video_table(rng, video_ids[keep], duration[keep]).to_csv(
    os.path.join(data, f"video_features_basic_{variant}.csv"), index=False
  )
  return root


def _user_table(rng, user_ids: np.ndarray) -> pd.DataFrame:
  n = len(user_ids)
  table = {
    "user_id": user_ids,
    "user_active_degree": rng.choice(["high_active", "full_active", "middle_active", "UNKNOWN"], n),
    "is_lowactive_period": rng.integers(0, 2, n),
    "is_live_streamer": rng.integers(0, 2, n),
    "is_video_author": rng.integers(0, 2, n),
  }
  for name in ("follow_user_num", "fans_user_num", "friend_user_num", "register_days"):
    table[name] = rng.integers(0, 600, n)
    table[f"{name}_range"] = rng.choice(_RANGES, n)
  for i in range(18):
    values = pd.Series(rng.integers(0, 3 + i, n)).astype("Int64")
    values[rng.random(n) < 0.05] = pd.NA  # some onehot features are empty in the release
    table[f"onehot_feat{i}"] = values
  return pd.DataFrame(table)


def _video_table(rng, video_ids: np.ndarray, duration: np.ndarray) -> pd.DataFrame:
  n = len(video_ids)
  tags = [",".join(map(str, rng.choice(40, rng.integers(1, 4), replace=False))) for _ in range(n)]
  duration = duration.astype(float)
  duration[rng.random(n) < 0.05] = np.nan
  return pd.DataFrame(
    {
      "video_id": video_ids,
      "author_id": rng.integers(0, max(4, n // 3), n),
      "video_type": rng.choice(["NORMAL", "AD"], n, p=[0.9, 0.1]),
      "upload_dt": "2022-03-01",
      "upload_type": rng.choice(["ShortImport", "Web", "LongImport"], n),
      "visible_status": rng.choice(["public", "friend"], n, p=[0.95, 0.05]),
      "video_duration": duration,
      "server_width": 720,
      "server_height": 1280,
      "music_id": rng.integers(0, max(4, n // 5), n),
      "music_type": rng.choice([0, 4, 9], n),
      "tag": np.where(rng.random(n) < 0.05, "", tags),
    }
  )
