"""Memorisation and diversity of generated samples, in a feature space (e.g. the oracle's penultimate layer).

Oracle accuracy and Fréchet distance cannot tell a model that learned a class from one that replays a handful of
memorised training images. These measures can:

- `precision_recall` (Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing generative
  models", §3): the real manifold is the union of balls around each real feature with radius its distance to its
  k-th nearest real neighbour. Precision = the fraction of samples inside the real manifold (fidelity); recall = the
  fraction of real features inside the samples' manifold (diversity). A generator that copies a few training images
  has high precision and low recall.
- `copy_fraction`: the ratio test of Yoon et al. 2023 ("Diffusion probabilistic models generalize when they fail to
  memorize") and Gu et al. 2023 ("On memorization in diffusion models", §3): a sample is a near-copy when its
  nearest training feature is closer than `ratio` = 1/3 times its second-nearest one (d₁ < d₂ / 3): it sits on one
  training image rather than between several. Exact duplicates in the training set are merged first, so a sample
  on a duplicated image is compared with the next *different* image (with both copies kept, d₂ = d₁ and no copy of
  a duplicated image could ever count). Returned is the fraction of near-copies. Held-out real images of the same
  data give the baseline a generator should match.
- `nearest_training_distance_ratio`: the median distance of samples to their nearest training feature divided by
  the same median for held-out real features (1: as far from the training set as new real data; → 0: copies;
  ≫ 1: off the data). Its ideal is 1, so it is summarised as |log r| (`directions`).
- `buffer_attraction`: the share of samples whose nearest training image is one of a replay buffer's images, to
  read beside the buffer's share of the training set (`is_buffered.mean()`): a generator that knows nothing of
  which images were buffered scores that share in expectation (each sample's nearest image is buffered with that
  probability); one that redraws its small buffer scores far above it. Computed in pixel space, on the training
  images as the run stored them (`buffered_mask` finds the buffer's images among them by content).

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
    """The fraction of `samples` (N, D) whose nearest `train` feature (D) is closer than `ratio` × the second-nearest
    different one (near-copies of one training image; Yoon et al. 2023, Gu et al. 2023). `train` needs at least 2
    distinct rows; exact duplicate rows count once."""
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    d = _nearest(samples, torch.unique(train, dim=0), 2)
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


def nearest_indices(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Index of each query's (N, D) nearest key (M ≥ 1, D), long (N,); ties go to the lowest index."""
    if keys.shape[0] < 1:
        raise ValueError("need at least 1 reference point")
    queries, keys = queries.double(), keys.double()
    out = [_distances(queries[s : s + _CHUNK], keys).argmin(dim=1) for s in range(0, queries.shape[0], _CHUNK)]
    return torch.cat(out)


def buffered_mask(train_images: torch.Tensor, buffer_images: torch.Tensor) -> torch.Tensor:
    """Bool (M,): which training images (M, C, H, W) equal one of the buffer's images (B, C, H, W), byte for byte
    (every copy of a buffered image counts as buffered: a sample near it is near the buffer)."""
    if train_images.shape[1:] != buffer_images.shape[1:]:
        raise ValueError(
            f"buffer images of shape {tuple(buffer_images.shape[1:])} are not training images of shape "
            f"{tuple(train_images.shape[1:])}"
        )
    flat_train, flat_buffer = train_images.flatten(1), buffer_images.flatten(1)
    if len(flat_buffer) == 0:
        return torch.zeros(len(flat_train), dtype=torch.bool)
    together, inverse = torch.unique(torch.cat([flat_buffer, flat_train]), dim=0, return_inverse=True)
    in_buffer = torch.zeros(len(together), dtype=torch.bool)
    in_buffer[inverse[: len(flat_buffer)]] = True
    return in_buffer[inverse[len(flat_buffer) :]]


def buffer_attraction(samples: torch.Tensor, train: torch.Tensor, is_buffered: torch.Tensor) -> float:
    """The share of `samples` (N, D) whose nearest `train` point (M, D) is a buffered one (`is_buffered`, bool
    (M,)). Its reference is `is_buffered.float().mean()`, the buffer's share of the training set."""
    if is_buffered.shape != (train.shape[0],):
        raise ValueError(f"is_buffered must be ({train.shape[0]},), got {tuple(is_buffered.shape)}")
    if samples.shape[0] == 0:
        raise ValueError("buffer attraction of an empty set of samples")
    return float(is_buffered[nearest_indices(samples, train)].double().mean())
