"""Continual-learning summaries of a task × task score matrix R, where R[k][i] is the score on task i after
training task k (i ≤ k; entries above the diagonal are NaN). Conventions follow mammoth / avalanche (accuracy
matrices) and CLoG (average incremental quality):

- average final score      A_T   = mean_i R[T][i]
- average incremental      AIQ   = mean_k ( mean_{i ≤ k} R[k][i] )
- forgetting               F     = mean_{i < T} ( best_{i ≤ k < T} R[k][i] − R[T][i] )   (best = max, or min when
                                   lower is better, and then the sign is flipped so forgetting is ≥ 0 when worse)
- backward transfer        BWT   = mean_{i < T} ( R[T][i] − R[i][i] )
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
    """Mean drop from the best earlier score to the final one over tasks 0..T−2 (0.0 for a single task)."""
    t = r.shape[0]
    if t < 2:
        return 0.0
    drops = []
    for i in range(t - 1):
        earlier = r[i : t - 1, i]
        best = earlier.max() if higher_is_better else earlier.min()
        drops.append(best - r[t - 1, i] if higher_is_better else r[t - 1, i] - best)
    return float(torch.stack(drops).mean())


def backward_transfer(r: torch.Tensor) -> float:
    t = r.shape[0]
    if t < 2:
        return 0.0
    return float(torch.stack([r[t - 1, i] - r[i, i] for i in range(t - 1)]).mean())


def summarize(r: torch.Tensor, higher_is_better: bool = True) -> dict[str, float]:
    return {
        "average_final": average_final(r),
        "average_incremental": average_incremental(r),
        "forgetting": forgetting(r, higher_is_better),
        "backward_transfer": backward_transfer(r),
    }
