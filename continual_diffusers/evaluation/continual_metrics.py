"""Continual-learning summaries of a task × task score matrix R, where R[k][i] is the score on task i after
training task k (i ≤ k; entries above the diagonal are NaN). Conventions follow mammoth / avalanche (accuracy
matrices) and CLoG (average incremental quality):

- average final score      A_T   = mean_i R[T][i]                       (in the metric's own units)
- average incremental      AIQ   = mean_k ( mean_{i ≤ k} R[k][i] )      (in the metric's own units)
- forgetting               F     = mean_{i < T} s · ( best_{i ≤ k < T} R[k][i] − R[T][i] )
- backward transfer        BWT   = mean_{i < T} s · ( R[T][i] − R[i][i] )

Sign convention, one for every metric: s = +1 when higher is better (accuracy, task share) and s = −1 when lower
is better (Fréchet distance, KID, class KL), "best" being the max or the min accordingly. Forgetting and backward
transfer are thus measured in the metric's "better" direction: **forgetting > 0 and BWT < 0 mean that earlier
tasks got worse**, for accuracy and FID alike; forgetting < 0 means the final score beats every earlier one, BWT > 0
that training later tasks improved the task. E.g. a task whose accuracy went 0.9 → 0.5 has forgetting 0.4 and
BWT −0.4; one whose FID went 10 → 40 has forgetting 30 and BWT −30. (Before this convention BWT was not
sign-flipped for lower-is-better metrics: the same FID task showed BWT +30.)
"""

from __future__ import annotations

import math

import torch


def as_matrix(rows: list[list[float]]) -> torch.Tensor:
    """Lower-triangular list of rows (row k has k+1 entries) → (T, T) float64 tensor with NaN above the diagonal."""
    t = len(rows)
    m = torch.full((t, t), math.nan, dtype=torch.float64)
    for k, row in enumerate(rows):
        if len(row) != k + 1:
            raise ValueError(f"row {k} has {len(row)} entries, expected {k + 1}")
        m[k, : k + 1] = torch.tensor(row, dtype=torch.float64)
    return m


def average_final(r: torch.Tensor) -> float:
    return float(r[-1].nanmean())


def average_incremental(r: torch.Tensor) -> float:
    return float(torch.stack([r[k, : k + 1].mean() for k in range(r.shape[0])]).mean())


def forgetting(r: torch.Tensor, higher_is_better: bool = True) -> float:
    """Mean worsening from the best earlier score to the final one over tasks 0..T−2, in the metric's "better"
    direction (see the module docstring): > 0 means worse. 0.0 for a single task."""
    t = r.shape[0]
    if t < 2:
        return 0.0
    sign = 1.0 if higher_is_better else -1.0
    drops = []
    for i in range(t - 1):
        earlier = r[i : t - 1, i]
        best = earlier.max() if higher_is_better else earlier.min()
        drops.append(sign * (best - r[t - 1, i]))
    return float(torch.stack(drops).mean())


def backward_transfer(r: torch.Tensor, higher_is_better: bool = True) -> float:
    """Mean change from just after learning each task to the end, over tasks 0..T−2, in the metric's "better"
    direction (see the module docstring): < 0 means worse. 0.0 for a single task."""
    t = r.shape[0]
    if t < 2:
        return 0.0
    sign = 1.0 if higher_is_better else -1.0
    return float(torch.stack([sign * (r[t - 1, i] - r[i, i]) for i in range(t - 1)]).mean())


def summarize(r: torch.Tensor, higher_is_better: bool = True) -> dict[str, float]:
    """Average final score, AIQ (both in the metric's units), forgetting and BWT (sign convention above)."""
    return {
        "average_final": average_final(r),
        "average_incremental": average_incremental(r),
        "forgetting": forgetting(r, higher_is_better),
        "backward_transfer": backward_transfer(r, higher_is_better),
    }
