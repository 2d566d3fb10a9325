"""Sample-quality metrics as pure functions on tensors (labels, logits or features).

- Fréchet distance (Heusel et al. 2017): ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2(Σ_a Σ_b)^{1/2}), here in the oracle's
  feature space ("oracle-feature FID"); the Inception-feature FID of the literature is the same formula on other
  features, which this package does not compute; the two are not comparable.
- KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy/d + 1)³, averaged over
  random subsets of at most half of each set (`kid_subsets`), reported with its sd over the subsets.
- Class-histogram KL (Masip et al. 2023): KL(p_true ‖ p_generated) of the oracle's labels; it grows when classes
  are missing from the samples, which is what forgetting looks like for an unconditional model.

Both are biased by the number of images: FID strongly (two draws of one distribution score well above 0 at a
hundred images per set), KID not in expectation but with a large spread. Compare them only at equal sample sizes
(the reports state N generated and M real images next to every value).
"""

from __future__ import annotations

import torch


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of predicted (N,) equal to labels (N,)."""
    if predicted.numel() == 0:
        raise ValueError("accuracy of an empty set")
    return float((predicted == labels).float().mean())


def per_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    return {int(c): accuracy(predicted[labels == c], labels[labels == c]) for c in labels.unique()}


def _mean_cov(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = features.double()
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to (N, D) and (M, D) feature sets (N, M ≥ 2).

    Tr((Σ_a Σ_b)^{1/2}) is computed as Σ √λ_i over the eigenvalues of Σ_a^{1/2} Σ_b Σ_a^{1/2} (symmetric PSD), which
    is stable and needs no scipy."""
    if features_a.shape[0] < 2 or features_b.shape[0] < 2:
        raise ValueError("Fréchet distance needs at least 2 samples per set")
    mu_a, cov_a = _mean_cov(features_a)
    mu_b, cov_b = _mean_cov(features_b)
    eval_a, evec_a = torch.linalg.eigh(cov_a)
    sqrt_a = evec_a @ torch.diag(eval_a.clamp(min=0).sqrt()) @ evec_a.T
    middle = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0)
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * middle.sqrt().sum()
    return float(value.clamp(min=0))


def mmd2_unbiased(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Unbiased MMD² with k(x, y) = (xᵀy/d + 1)³ between (N, D) and (M, D) sets (N, M ≥ 2)."""
    a, b = features_a.double(), features_b.double()
    d = a.shape[1]
    k_aa, k_bb, k_ab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    n, m = a.shape[0], b.shape[0]
    term_aa = (k_aa.sum() - k_aa.diagonal().sum()) / (n * (n - 1))
    term_bb = (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
    return float(term_aa + term_bb - 2 * k_ab.mean())


def kid_subsets(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    subset_size: int = 100,
    num_subsets: int = 100,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Unbiased MMD² (`mmd2_unbiased`) of `num_subsets` random subset pairs of (N, D) and (M, D) features: (S,).

    Each subset draws s = min(subset_size, N // 2, M // 2) (at least 2) images of each set without replacement,
    independently of the other subsets (torch-fidelity's scheme). Capping s at half of each set means the subsets
    are different images, so their spread is a spread: with s = N every subset would hold all the generated
    images and the sd over subsets would only reflect the real side."""
    size = max(2, min(subset_size, features_a.shape[0] // 2, features_b.shape[0] // 2))
    if min(features_a.shape[0], features_b.shape[0]) < size:
        raise ValueError("KID needs at least 2 samples per set")
    values = []
    for _ in range(num_subsets):
        ia = torch.randperm(features_a.shape[0], generator=generator)[:size]
        ib = torch.randperm(features_b.shape[0], generator=generator)[:size]
        values.append(mmd2_unbiased(features_a[ia], features_b[ib]))
    return torch.tensor(values, dtype=torch.float64)


def kernel_inception_distance(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    subset_size: int = 100,
    num_subsets: int = 100,
    generator: torch.Generator | None = None,
) -> float:
    """KID (Bińkowski et al. 2018): the mean of `kid_subsets`."""
    return float(kid_subsets(features_a, features_b, subset_size, num_subsets, generator).mean())


def kernel_inception_distance_with_sd(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    subset_size: int = 100,
    num_subsets: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """(KID, its sample standard deviation over the subsets) from `kid_subsets`: the spread of one subset's
    estimate, which is what torch-fidelity reports as KID's std."""
    values = kid_subsets(features_a, features_b, subset_size, num_subsets, generator)
    return float(values.mean()), float(values.std()) if len(values) > 1 else 0.0


def class_histogram_kl(predicted: torch.Tensor, true_probs: torch.Tensor, eps: float = 1e-6) -> float:
    """KL(p_true ‖ p_gen) where p_gen is the histogram of predicted labels (N,) over len(true_probs) classes.

    `eps` smooths empty bins so a missing class gives a large finite value instead of infinity."""
    k = true_probs.numel()
    counts = torch.bincount(predicted.long(), minlength=k)[:k].double()
    p_gen = (counts + eps) / (counts.sum() + eps * k)
    p_true = true_probs.double() / true_probs.sum()
    mask = p_true > 0
    return float((p_true[mask] * (p_true[mask] / p_gen[mask]).log()).sum())
