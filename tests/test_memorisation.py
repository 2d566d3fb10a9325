"""Memorisation and diversity measures on constructed cases with known answers: a "generator" that returns its
training set (or buffer) must score as fully memorised, one that returns held-out real data as not; hand-computed
1-D cases for the exact definitions."""

from __future__ import annotations

import pytest
import torch

from continual_diffusers.evaluation.memorisation import (
    copy_fraction,
    nearest_training_distance_ratio,
    precision_recall,
)


def gaussian(n: int, seed: int, dim: int = 8) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


TRAIN, HELDOUT, FRESH = gaussian(400, 0), gaussian(400, 1), gaussian(400, 2)


def test_hand_computed_precision_recall_in_one_dimension():
    """real {0, 1, 2, 3}: every 1-NN radius is 1; fake {0.5, 10}: 0.5 is inside, 10 is not → precision 1/2. The two
    fake points' 1-NN radii are both 9.5, so B(0.5, 9.5) holds every real point → recall 1."""
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)


def test_hand_computed_copy_fraction_in_one_dimension():
    """train {0, 10, 20}: 0.1 has d₁ = 0.1 < d₂/3 = 9.9/3 (a near-copy); 5 has d₁ = d₂ = 5 (between two)."""
    train = torch.tensor([[0.0], [10.0], [20.0]])
    assert copy_fraction(torch.tensor([[0.1], [5.0]]), train) == 0.5


def test_a_generator_that_returns_its_buffer_is_fully_memorised():
    buffer = TRAIN[:50]
    for samples in (buffer, buffer + 1e-3 * gaussian(50, 3)):
        assert copy_fraction(samples, TRAIN) == 1.0
        assert nearest_training_distance_ratio(samples, TRAIN, HELDOUT) < 0.01


def test_held_out_real_data_is_not_memorised():
    """New draws of the same distribution are as far from the training set as held-out data (ratio ≈ 1) and are
    near-copies as rarely (a few per cent in 8-D)."""
    baseline = copy_fraction(HELDOUT, TRAIN)
    assert baseline < 0.1
    assert abs(copy_fraction(FRESH, TRAIN) - baseline) < 0.05
    assert 0.85 < nearest_training_distance_ratio(FRESH, TRAIN, HELDOUT) < 1.15


def test_precision_and_recall_separate_fidelity_from_diversity():
    same_p, same_r = precision_recall(HELDOUT, FRESH)
    assert same_p > 0.7 and same_r > 0.7  # the same distribution: both high
    collapsed = TRAIN[:1] + 1e-3 * gaussian(400, 4)  # mode collapse onto one real point
    p, r = precision_recall(HELDOUT, collapsed)
    p_train, r_train = precision_recall(TRAIN, collapsed)
    assert p_train == 1.0 and r_train < 0.05  # faithful (on a real point) but not diverse
    assert r < 0.05
    assert precision_recall(HELDOUT, FRESH + 100.0) == (0.0, 0.0)  # elsewhere entirely


def test_duplicates_do_not_count_as_their_own_neighbours():
    """A point's own zero distance is skipped, but an exact duplicate is a real neighbour (radius 0 there)."""
    real = torch.tensor([[0.0], [0.0], [10.0], [11.0]])
    # radii (k = 1): 0 for both zeros (each other's duplicate), 1 for 10 and 11. Fake 0 is inside B(0, 0), 10.5
    # inside B(10, 1), 0.5 in no ball (it would be if a duplicate were skipped like the point itself: radius 10).
    assert precision_recall(real, torch.tensor([[0.0], [0.5], [10.5]]), k=1)[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: precision_recall(TRAIN, FRESH, k=0), "k must be >= 1"),
        (lambda: precision_recall(TRAIN[:3], FRESH, k=3), "at least 4 reference features"),
        (lambda: copy_fraction(FRESH, TRAIN, ratio=1.0), r"ratio must be in \(0, 1\)"),
        (lambda: copy_fraction(FRESH, TRAIN[:1]), "at least 2 reference features"),
        (lambda: nearest_training_distance_ratio(FRESH, TRAIN, TRAIN), "not held out"),
    ],
)
def test_refused_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------ in the end-of-task evaluation
def _evaluate(monkeypatch, images_for_task, train_tasks=True, num_samples=60):
    """Run a ContinualEvaluator on the bundled digits' tasks 1 and 2 (untrained oracle: its random features still
    separate images) whose "generator" returns `images_for_task(task_id, train_images, test_images)`."""
    from continual_diffusers.data import ImageTransform, TaskDataset, load_split_digits
    from continual_diffusers.evaluation import evaluator as evaluator_mod
    from continual_diffusers.evaluation.classifier import OracleCNN
    from continual_diffusers.models.conditioning import ClassConditioning
    from continual_diffusers.sampling.generate import SamplerOptions

    train, test = load_split_digits(num_tasks=5)

    def images(task):
        return TaskDataset(task, ImageTransform(8, center_crop=True)).batch(torch.arange(len(task)))["images"]

    def fake_generate(model, conditioning, scheduler, labels, options, device, desc=None):
        task_id = options.seed % 1000  # the evaluator seeds each task's samples with seed·1000 + task
        return images_for_task(task_id, images(train[task_id]), images(test[task_id]))[: len(labels)]

    monkeypatch.setattr(evaluator_mod, "generate_samples", fake_generate)
    torch.manual_seed(0)
    oracle = OracleCNN(in_channels=1, num_classes=10)
    evaluator = evaluator_mod.ContinualEvaluator(
        oracle, 8, test, num_samples, SamplerOptions(), train_tasks=train if train_tasks else None
    )
    classes = {str(t): train[t].classes() for t in train.task_ids}
    conditioning = ClassConditioning(10, null_class=False)
    return evaluator.evaluate(None, conditioning, None, [1, 2], classes, "cpu")


def test_evaluator_scores_a_generator_that_returns_training_images_as_memorised(monkeypatch):
    results = _evaluate(monkeypatch, lambda task, train, test: train)
    for task in (1, 2):
        assert results["copy_fraction"][task] == 1.0
        assert results["train_distance_ratio"][task] == 0.0
    assert set(results) >= {"accuracy", "frechet", "copy_fraction", "train_distance_ratio", "precision", "recall"}


def test_evaluator_scores_held_out_images_as_not_memorised(monkeypatch):
    results = _evaluate(monkeypatch, lambda task, train, test: test)
    for task in (1, 2):
        assert results["copy_fraction"][task] < 0.1
        assert results["train_distance_ratio"][task] == pytest.approx(1.0, abs=0.15)  # 60 of the ~72 held-out
        assert results["recall"][task] > 0.5


def test_evaluator_leaves_the_measures_out_without_training_tasks_or_samples(monkeypatch):
    without_train = _evaluate(monkeypatch, lambda task, train, test: test, train_tasks=False)
    assert "copy_fraction" not in without_train and "accuracy" in without_train
    too_few = _evaluate(monkeypatch, lambda task, train, test: test, num_samples=3)  # k-NN needs more than k = 3
    assert "recall" not in too_few and "frechet" in too_few


def test_evaluator_skips_the_distance_ratio_when_test_images_are_the_training_images(monkeypatch):
    from continual_diffusers.evaluation import evaluator as evaluator_mod

    monkeypatch.setattr(evaluator_mod.ContinualEvaluator, "_real_of", lambda self, t: (None, self._train_of(t)))
    results = _evaluate(monkeypatch, lambda task, train, test: test)
    assert "train_distance_ratio" not in results and "copy_fraction" in results
