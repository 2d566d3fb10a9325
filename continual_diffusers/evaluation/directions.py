"""How each metric of the end-of-task evaluation is read: its direction, how it is summarised, the name a user sees.

- `HIGHER_IS_BETTER`: the direction of every metric whose R[k][i] matrix gets the full summary (average final,
  AIQ, forgetting, backward transfer; `continual_metrics`).
- `DERIVED`: metrics whose ideal lies in the middle are summarised through a transform that has one direction.
  `train_distance_ratio` r (the samples' median distance to the training set over held-out images'): 1 is ideal,
  r ≪ 1 is copying and r ≫ 1 is off the data, so neither "higher" nor "lower" is better; its summary is that of
  `abs_log_train_distance_ratio` = |log r| (0 is ideal, lower is better), which grows both ways.
- `LEVEL_ONLY`: metrics shown as averages (final, AIQ) without forgetting or backward transfer, whose direction
  would be wrong for them: the raw ratio r.
- `NOT_SUMMARISED`: kept in the matrices and the CSV only: the sample sizes behind FID and KID, KID's sd over
  subsets, and an unconditional model's raw `task_share`, whose ideal (the task's share of the seen data, 1/(k+1)
  for equal tasks) changes with k; `task_share_normalised` (share / that ideal, capped at 1) is the summarised one.
- `SAMPLE_SIZE_DEPENDENT`: FID and KID, whose values are comparable only at equal numbers of images
  (`num_generated`, `num_real`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

HIGHER_IS_BETTER = {
    "accuracy": True,
    "frechet": False,
    "kid": False,
    "task_share_normalised": True,
    "class_kl": False,
    "copy_fraction": False,
    "abs_log_train_distance_ratio": False,  # 0: as far from the training set as new real images
    "precision": True,
    "recall": True,
}
DERIVED: dict[str, tuple[str, Callable[[float], float]]] = {
    "abs_log_train_distance_ratio": ("train_distance_ratio", lambda r: abs(math.log(r)) if r > 0 else math.inf),
}
LEVEL_ONLY = {"train_distance_ratio"}
NOT_SUMMARISED = {"num_generated", "num_real", "kid_sd", "task_share"}
SAMPLE_SIZE_DEPENDENT = ("frechet", "kid")
DISPLAY_NAMES = {
    "frechet": "oracle-feature FID",
    "kid": "oracle-feature KID",
    "abs_log_train_distance_ratio": "|log train_distance_ratio|",
}
BOUNDED = ("accuracy", "task_share", "task_share_normalised", "copy_fraction", "precision", "recall")


def display_name(metric: str) -> str:
    """The name a user reads for `metric` (its key in metrics.json / metrics.csv otherwise)."""
    return DISPLAY_NAMES.get(metric, metric)


def direction_text(metric: str) -> str:
    """ "higher ↑", "lower ↓" or, for a metric summarised through a transform, how its raw value is read."""
    if metric == "train_distance_ratio":
        return "≈ 1 (< 1 copies, > 1 off the data)"
    return "higher ↑" if HIGHER_IS_BETTER.get(metric, True) else "lower ↓"
