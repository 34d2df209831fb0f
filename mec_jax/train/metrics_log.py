"""``metrics.jsonl``: one JSON object per line, appended and flushed per event."""

from __future__ import annotations

import json
import time

from mec_jax.train import distributed


class MetricsLog:
  """Appends JSON lines to ``path`` (flushed per line, so a kill loses nothing).

  Only the writer process (process 0) writes; the others' events are the same.
  """

  def __init__(self, path: str):
    self.path = path

  def write(self, event: str, **fields) -> None:
    if not distributed.is_writer():
      return
    with open(self.path, "a") as fh:
      fh.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")
