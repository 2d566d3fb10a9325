"""Metrics against closed forms and hand-computed cases; continual summaries on a hand-written matrix."""

from __future__ import annotations

import math

import pytest
import torch

from continual_diffusers.evaluation import continual_metrics as cm
from continual_diffusers.evaluation.metrics import (
    accuracy,
    class_histogram_kl,
    frechet_distance,
    kernel_inception_distance,
    mmd2_unbiased,
    per_class_accuracy,
)


def exact_gaussian_sample(mean: torch.Tensor, std: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n points whose sample mean is `mean` and sample covariance is diag(std²) exactly."""
    z = torch.randn(n, mean.numel(), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(0)
    cov = z.T @ z / (n - 1)
    evals, evecs = torch.linalg.eigh(cov)
    z = z @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T  # whiten: sample covariance = I
    return mean + z * std


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    mu_a, mu_b = (
        torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64),
        torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64),
    )
    sd_a, sd_b = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64), torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    a, b = exact_gaussian_sample(mu_a, sd_a, 50, 0), exact_gaussian_sample(mu_b, sd_b, 80, 1)
    expected = float((mu_a - mu_b).pow(2).sum() + (sd_a - sd_b).pow(2).sum())  # ‖Δμ‖² + Σ(σ_a − σ_b)²
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(3)
    a = torch.randn(40, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 4, generator=g, dtype=torch.float64)
    b = torch.randn(60, 4, generator=g, dtype=torch.float64) + 0.5
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    ca, cb = torch.cov(a.T).numpy(), torch.cov(b.T).numpy()
    covmean = scipy_linalg.sqrtm(ca @ cb).real
    expected = ((mu_a - mu_b) ** 2).sum() + (ca + cb - 2 * covmean).trace()
    assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-6)


def test_mmd2_unbiased_by_hand():
    a, b = torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [3.0]])

    def k(x, y):
        return (x * y + 1.0) ** 3  # d = 1

    aa = 2 * k(0, 1) / 2
    bb = 2 * k(2, 3) / 2
    ab = (k(0, 2) + k(0, 3) + k(1, 2) + k(1, 3)) / 4
    assert mmd2_unbiased(a, b) == pytest.approx(aa + bb - 2 * ab)


def test_kid_is_unbiased_for_identical_distributions():
    g = torch.Generator().manual_seed(0)
    values = [mmd2_unbiased(torch.randn(20, 3, generator=g), torch.randn(20, 3, generator=g)) for _ in range(400)]
    mean = sum(values) / len(values)
    stderr = (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5
    assert abs(mean) < 3 * stderr  # the biased V-statistic would sit clearly above 0
    far = kernel_inception_distance(torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g) + 3, 20, 5, g)
    assert far > 10 * 3 * stderr


def test_class_histogram_kl():
    true = torch.tensor([0.5, 0.5, 0.0])
    assert class_histogram_kl(torch.tensor([0, 1, 0, 1]), true) == pytest.approx(0.0, abs=1e-5)
    # generated 3:1 → KL(true ‖ gen) = ½ ln(½/¾) + ½ ln(½/¼)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert class_histogram_kl(torch.tensor([0, 0, 0, 1]), true) == pytest.approx(expected, rel=1e-4)
    assert class_histogram_kl(torch.tensor([0, 0, 0, 0]), true) > 5  # a missing class costs a lot


def test_accuracy_per_class():
    pred, labels = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2])
    assert accuracy(pred, labels) == 0.75
    assert per_class_accuracy(pred, labels) == {0: 1.0, 1: 1.0, 2: 0.5}


def test_continual_summaries_on_a_hand_written_matrix():
    r = cm.as_matrix([[0.9], [0.6, 0.8], [0.5, 0.7, 0.95]])
    assert cm.average_final(r) == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    assert cm.average_incremental(r) == pytest.approx((0.9 + 0.7 + (0.5 + 0.7 + 0.95) / 3) / 3)
    assert cm.forgetting(r) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    assert cm.backward_transfer(r) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    fid = cm.as_matrix([[10.0], [30.0, 12.0], [40.0, 11.0, 9.0]])  # lower is better
    assert cm.forgetting(fid, higher_is_better=False) == pytest.approx(((40 - 10) + (11 - 12)) / 2)
    # BWT in the "better" direction too: FID 10 → 40 and 12 → 11 is worse on average, so BWT < 0.
    assert cm.backward_transfer(fid, higher_is_better=False) == pytest.approx(((10 - 40) + (12 - 11)) / 2)
    assert cm.forgetting(cm.as_matrix([[0.3]])) == 0.0
    with pytest.raises(ValueError):
        cm.as_matrix([[1.0], [1.0]])
