"""Memorisation and diversity of generated samples, in a feature space (e.g. the oracle's penultimate layer).

Oracle accuracy and Fréchet distance cannot tell a model that learned a class from one that replays a handful of
memorised training images. These measures can:

- `precision_recall` (Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing generative
  models", §3): the real manifold is the union of balls around each real feature with radius its distance to its
  k-th nearest real neighbour. Precision = the fraction of samples inside the real manifold (fidelity); recall = the
  fraction of real features inside the samples' manifold (diversity). A generator that copies a few training images
  has high precision and low recall.
- `copy_fraction` (after Carlini et al. 2023, "Extracting training data from diffusion models", §4.2, ℓ2 with a
  relative threshold): a sample is a near-copy when its nearest training feature is closer than `ratio` times its
  second-nearest one (d₁ < ratio · d₂): it sits on one training image rather than between several. Returned is the
  fraction of near-copies. Held-out real images of the same data give the baseline a generator should match.
- `nearest_training_distance_ratio`: the median distance of samples to their nearest training feature divided by
  the same median for held-out real features (1: as far from the training set as new real data; 0: copies).

All inputs are features (N, D); distances are Euclidean and computed in chunks, so memory stays O(chunk × M).
They are computed directly (not through ‖a‖² + ‖b‖² − 2aᵀb, which leaves ~1e-7 where a copy is at distance 0), so
an exact copy is at distance exactly 0.
"""

from __future__ import annotations

import torch

_CHUNK = 1024


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (N, M) between (N, D) and (M, D), exact for identical rows (see the module docstring)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _nearest(queries: torch.Tensor, keys: torch.Tensor, k: int, exclude_self: bool = False) -> torch.Tensor:
    """Distances (N, k) from each query (N, D) to its k nearest keys (M, D), ascending; with `exclude_self`
    (queries is keys) each point's zero distance to itself is skipped."""
    queries, keys = queries.double(), keys.double()
    take = k + 1 if exclude_self else k
    if keys.shape[0] < take:
        raise ValueError(f"need at least {take} reference features for k = {k}, got {keys.shape[0]}")
    out = []
    for start in range(0, queries.shape[0], _CHUNK):
        d = _distances(queries[start : start + _CHUNK], keys)  # (chunk, M)
        if exclude_self:
            rows = torch.arange(d.shape[0])
            d[rows, rows + start] = float("inf")  # not its own neighbour, even among duplicates
        out.append(d.topk(k, dim=1, largest=False).values)
    return torch.cat(out)


def _inside_manifold(points: torch.Tensor, manifold: torch.Tensor, k: int) -> torch.Tensor:
    """Bool (N,): whether each point lies in some ball B(m, r_k(m)) of the manifold's k-NN radii."""
    radii = _nearest(manifold, manifold, k, exclude_self=True)[:, -1]  # (M,)
    manifold, radii = manifold.double(), radii.double()
    inside = []
    for start in range(0, points.shape[0], _CHUNK):
        d = _distances(points[start : start + _CHUNK].double(), manifold)  # (chunk, M)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of samples `fake` (N, D) against `real` (M, D) with k-NN manifolds (Kynkäänniemi et al.
    2019 use k = 3)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    precision = float(_inside_manifold(fake, real, k).double().mean())
    recall = float(_inside_manifold(real, fake, k).double().mean())
    return precision, recall


def copy_fraction(samples: torch.Tensor, train: torch.Tensor, ratio: float = 1 / 3) -> float:
    """The fraction of `samples` (N, D) whose nearest `train` feature (M ≥ 2, D) is closer than `ratio` × the
    second-nearest one (near-copies of one training image)."""
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    d = _nearest(samples, train, 2)
    return float((d[:, 0] < ratio * d[:, 1]).double().mean())


def nearest_training_distance(points: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """min_j ‖p_i − t_j‖ per point, (N,)."""
    return _nearest(points, train, 1)[:, 0]


def nearest_training_distance_ratio(samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor) -> float:
    """median_i min_j ‖s_i − t_j‖ / median_i min_j ‖h_i − t_j‖: samples' distance to the training set relative to
    held-out real data's (≈ 1 for a generator that learned the distribution, → 0 for one that copies)."""
    sample_d = nearest_training_distance(samples, train).median()
    heldout_d = nearest_training_distance(heldout, train).median()
    if heldout_d <= 0:
        raise ValueError("held-out features coincide with training features: they are not held out")
    return float(sample_d / heldout_d)
