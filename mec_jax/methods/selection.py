"""Stage B settings chosen on validation: each option's artifacts scored by their swap-in model.

``pq`` tries byte-budget shapes (M, K) and ``pq_head`` head fractions the same way: build the
artifacts of every option (nothing written), score each set with ``StageB.evaluate`` (stage-A
weights with these tables, ``train.monitor`` on the validation split), keep the best and save it
with every option's scores in its stats (``report.json`` shows them). What is selected on is what
ships: the kept artifacts are the scored ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from absl import logging

from mec_jax.methods import base


def best_on_valid(
  options: Sequence,
  build: Callable[[object], dict],
  ctx: base.StageB,
  label: Callable[[object], str],
  what: str,
) -> tuple[dict, dict]:
  """The artifacts of the option whose swap-in scores best on validation, and every score.

  Args:
    options: settings to try, in order; ties keep the earlier one, and with one option or no
      ``ctx.evaluate`` (no stage-A model) the first is kept without building the others.
    build: ``option -> {field: Artifact}`` (writes nothing).
    ctx: stage B's context (its ``evaluate``).
    label: ``option -> str``, the option's key among the scores.
    what: what the options are, for the log (e.g. ``"pq_head head_fraction"``).

  Returns:
    ``({field: Artifact} of the kept option, {label: {"valid_auc", "valid_score"}})``; the
    scores are empty when nothing was scored.
  """
  best, best_score, scores = None, None, {}
  for option in options:
    arts = build(option)
    if len(options) == 1 or ctx.evaluate is None:
      return arts, {}
    metrics = ctx.evaluate(arts)
    scores[label(option)] = {k: metrics[k] for k in ("valid_auc", "valid_score")}
    logging.info("compress: %s %s -> %s", what, label(option), scores[label(option)])
    if best_score is None or metrics["valid_score"] > best_score:
      best, best_score = arts, metrics["valid_score"]
  return best, scores


def save_kept(method: base.Method, ctx: base.StageB, arts: dict, key: str, scores: dict) -> dict:
  """Records ``scores`` under ``stats[key]`` of each kept artifact (when any) and saves them."""
  for name, art in arts.items():
    if scores:
      art.stats[key] = scores
    if ctx.writes:
      art.save(base.field_path(method, ctx, name))
  return arts
