"""The evaluation's statistics and directions on constructed cases with known answers: KID's subsets and sd, the
distance ratio summarised as |log r|, an unconditional model's task share normalised by its expected share, the copy
criterion with duplicated training images, buffer attraction, and the sample sizes the report states."""

from __future__ import annotations

import json
import math

import pytest
import torch

from continual_diffusers.evaluation import ContinualReport
from continual_diffusers.evaluation.memorisation import buffer_attraction, buffered_mask, copy_fraction
from continual_diffusers.evaluation.metrics import kernel_inception_distance_with_sd, kid_subsets
from continual_diffusers.models.conditioning import ClassConditioning, Unconditional


def gaussian(n: int, seed: int, dim: int = 8) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------- KID
def test_kid_subsets_do_not_all_hold_the_same_generated_images():
    """Against a constant real set every real subset is the same, so any spread over subsets comes from the
    generated side: with 8 generated images, subsets of all 8 (the old rule) would give sd 0."""
    fake, real = gaussian(8, 0), torch.zeros(50, 8)
    values = kid_subsets(fake, real, subset_size=100, num_subsets=20, generator=torch.Generator().manual_seed(0))
    assert values.shape == (20,) and values.std() > 0
    mean, sd = kernel_inception_distance_with_sd(fake, real, generator=torch.Generator().manual_seed(0))
    assert sd > 0 and mean > 0


def test_kid_is_about_zero_with_an_sd_for_one_distribution():
    mean, sd = kernel_inception_distance_with_sd(gaussian(200, 1), gaussian(200, 2))
    assert sd > 0 and abs(mean) < 3 * sd


# ---------------------------------------------------------------------------------------------------- directions
def _report(rows_by_metric: dict[str, list[list[float]]]) -> ContinualReport:
    report = ContinualReport()
    for k in range(len(next(iter(rows_by_metric.values())))):
        report.add(k + 1, {name: dict(enumerate(rows[k], 1)) for name, rows in rows_by_metric.items()})
    return report


@pytest.mark.parametrize("final", [5.0, 0.2])  # off the data, or copying: worse both ways
def test_distance_ratio_is_summarised_as_abs_log_ratio(final):
    """Task 0's ratio goes from the ideal 1 to `final`: |log r| rises by |log final|, so forgetting > 0 and BWT < 0
    whichever way r moved (summarised as "higher is better", r → 5 read as BWT +4, an improvement)."""
    summary = _report({"train_distance_ratio": [[1.0], [final, 1.0]]}).summary()
    assert summary["abs_log_train_distance_ratio"]["forgetting"] == pytest.approx(abs(math.log(final)))
    assert summary["abs_log_train_distance_ratio"]["backward_transfer"] == pytest.approx(-abs(math.log(final)))
    assert set(summary["train_distance_ratio"]) == {"average_final", "average_incremental"}  # no direction
    assert summary["train_distance_ratio"]["average_final"] == pytest.approx((final + 1) / 2)


def test_distance_ratio_report_files(tmp_path):
    _report({"train_distance_ratio": [[1.0], [5.0, 1.0]]}).write(str(tmp_path))
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["higher_is_better"]["abs_log_train_distance_ratio"] is False
    md = (tmp_path / "report.md").read_text()
    assert "| train_distance_ratio | ≈ 1 (< 1 copies, > 1 off the data) | 3.0000 | 2.0000 | – | – |" in md
    assert "| \\|log train_distance_ratio\\| | lower ↓ |" in md
    assert (tmp_path / "heatmap_train_distance_ratio.png").is_file()


def _unconditional(monkeypatch, shares_for: dict[int, list[int]]):
    """Evaluate an unconditional "model" after tasks 1..5 of the digits (2 classes each) whose samples the oracle
    labels so that task t's share is `shares_for[k][t − 1]` samples out of 100·k (k = the seen tasks)."""
    from continual_diffusers.data import load_split_digits
    from continual_diffusers.evaluation import evaluator as evaluator_mod
    from continual_diffusers.evaluation.classifier import OracleCNN
    from continual_diffusers.sampling.generate import SamplerOptions

    _, test = load_split_digits()
    evaluator = evaluator_mod.ContinualEvaluator(
        OracleCNN(in_channels=1, num_classes=10), 8, test, 100, SamplerOptions()
    )
    classes = {str(t): test[t].classes() for t in test.task_ids}
    report = ContinualReport()
    for k in range(1, 6):
        counts = shares_for[k]
        labels = torch.cat([torch.full((n,), classes[str(t)][0]) for t, n in zip(range(1, k + 1), counts)])
        monkeypatch.setattr(evaluator_mod, "generate_samples", lambda *a, y=labels, **kw: torch.zeros(len(y), 1, 8, 8))
        monkeypatch.setattr(evaluator, "_judge", lambda images, y=labels: (y, gaussian(len(y), 0, dim=128)))
        report.add(k, evaluator.evaluate(None, Unconditional(), None, list(range(1, k + 1)), classes, "cpu"))
    return report


def test_a_perfect_unconditional_model_has_no_forgetting_of_its_task_share(monkeypatch):
    """Five equal tasks, each always given its share 1/k of the samples: the raw share falls 1 → 1/2 → … → 1/5 (its
    forgetting against 1 was 0.32 before), the normalised share stays 1 (forgetting 0)."""
    report = _unconditional(monkeypatch, {k: [100] * k for k in range(1, 6)})
    summary = report.summary()
    assert summary["task_share_normalised"]["forgetting"] == pytest.approx(0.0, abs=0.02)
    assert summary["task_share_normalised"]["average_final"] == pytest.approx(1.0, abs=0.02)
    assert "task_share" not in summary  # its ideal changes with k: kept in the matrices only
    assert report.matrices()["task_share"][-1] == pytest.approx([0.2] * 5)


def test_an_unconditional_model_that_keeps_only_its_last_task_forgets_everything(monkeypatch):
    report = _unconditional(monkeypatch, {k: [0] * (k - 1) + [100 * k] for k in range(1, 6)})
    assert report.summary()["task_share_normalised"]["forgetting"] == pytest.approx(1.0, abs=0.02)


# ----------------------------------------------------------------------------------------------- copy criterion
def test_duplicated_training_images_do_not_hide_their_copies():
    """train {0, 0, 10}: a sample at 0.1 copies the duplicated image 0. With both copies kept its second-nearest
    distance would be 0.1 as well (d₁ < d₂/3 never holds); the duplicates are merged first, so d₂ = 9.9."""
    train = torch.tensor([[0.0], [0.0], [10.0]])
    assert copy_fraction(torch.tensor([[0.1], [5.0]]), train) == 0.5
    assert copy_fraction(torch.tensor([[0.1]]), torch.tensor([[0.0], [10.0]])) == 1.0


# ----------------------------------------------------------------------------------------------- buffer attraction
TRAIN, HELDOUT = gaussian(400, 3), gaussian(400, 4)
IN_BUFFER = torch.zeros(400, dtype=torch.bool)
IN_BUFFER[torch.randperm(400, generator=torch.Generator().manual_seed(5))[:40]] = True  # a 10 % buffer


def test_a_generator_that_returns_its_buffer_has_attraction_one():
    buffer = TRAIN[IN_BUFFER]
    assert buffer_attraction(buffer, TRAIN, IN_BUFFER) == 1.0
    assert buffer_attraction(buffer + 1e-3 * gaussian(40, 6), TRAIN, IN_BUFFER) == 1.0


def test_held_out_images_score_about_the_buffers_share():
    """Each held-out image's nearest training image is buffered with probability 0.1 (binomial sd 0.015)."""
    assert buffer_attraction(HELDOUT, TRAIN, IN_BUFFER) == pytest.approx(0.1, abs=0.05)


def test_buffered_mask_finds_every_copy_of_a_buffered_image():
    train = torch.tensor([[[[1]]], [[[2]]], [[[1]]], [[[3]]]], dtype=torch.uint8)  # image 1 twice
    assert buffered_mask(train, train[:1]).tolist() == [True, False, True, False]
    assert buffered_mask(train, train[:0]).tolist() == [False] * 4
    with pytest.raises(ValueError, match="not training images"):
        buffered_mask(train, torch.zeros(1, 1, 2, 2, dtype=torch.uint8))


def _evaluate_with_buffer(monkeypatch, samples_for):
    """The class-conditional evaluator on the digits' tasks 1 and 2, with a 10 % buffer of each task's training
    images; its "generator" returns `samples_for(task, buffer images in [-1, 1], test images in [-1, 1])`."""
    from continual_diffusers.data import ImageTransform, TaskDataset, load_split_digits
    from continual_diffusers.evaluation import evaluator as evaluator_mod
    from continual_diffusers.evaluation.classifier import OracleCNN
    from continual_diffusers.sampling.generate import SamplerOptions

    train, test = load_split_digits()
    transform = ImageTransform(8, center_crop=True)
    g = torch.Generator().manual_seed(0)
    buffered = {t: TaskDataset(train[t], transform).images for t in (1, 2)}
    buffered = {t: v[torch.randperm(len(v), generator=g)[: len(v) // 10]] for t, v in buffered.items()}

    def fake_generate(model, conditioning, scheduler, labels, options, device, desc=None):
        task_id = options.seed % 1000
        test_images = TaskDataset(test[task_id], transform).batch(torch.arange(len(test[task_id])))["images"]
        return samples_for(task_id, transform(buffered[task_id]), test_images)[: len(labels)]

    monkeypatch.setattr(evaluator_mod, "generate_samples", fake_generate)
    torch.manual_seed(0)
    evaluator = evaluator_mod.ContinualEvaluator(
        OracleCNN(in_channels=1, num_classes=10), 8, test, 60, SamplerOptions(), train_tasks=train
    )
    classes = {str(t): train[t].classes() for t in train.task_ids}
    return evaluator.evaluate(None, ClassConditioning(10, null_class=False), None, [1, 2], classes, "cpu", buffered)


def test_the_evaluator_scores_a_generator_that_redraws_its_buffer_as_attracted(monkeypatch):
    results = _evaluate_with_buffer(monkeypatch, lambda task, buffer, test: buffer.repeat(3, 1, 1, 1))
    assert results["buffer_attraction"] == {0: 1.0}
    assert results["buffer_share"][0] == pytest.approx(0.1, abs=0.01)


def test_the_evaluator_scores_held_out_images_at_about_the_buffers_share(monkeypatch):
    results = _evaluate_with_buffer(monkeypatch, lambda task, buffer, test: test)
    assert results["buffer_attraction"][0] == pytest.approx(results["buffer_share"][0], abs=0.08)
    assert {"num_generated", "num_real", "kid", "kid_sd"} <= set(results)
    assert results["num_generated"] == {1: 60.0, 2: 60.0} and results["num_real"][1] == 72.0


def test_no_buffer_no_attraction(monkeypatch):
    from continual_diffusers.evaluation import evaluator as evaluator_mod

    evaluator = evaluator_mod.ContinualEvaluator.__new__(evaluator_mod.ContinualEvaluator)
    evaluator.train_tasks = object()
    assert evaluator.buffer_attraction([(torch.zeros(2, 1, 8, 8), [1])], None) == {}
    assert evaluator.buffer_attraction([(torch.zeros(2, 1, 8, 8), [1])], {}) == {}


# ---------------------------------------------------------------------------------------------------- sample sizes
def _history(num_generated: list[list[float]]) -> ContinualReport:
    fid = [[10.0], [30.0, 9.0]]
    return _report({"frechet": fid, "num_generated": num_generated, "num_real": [[72.0], [72.0, 72.0]]})


def test_the_report_states_the_sample_sizes_and_the_sampler(tmp_path):
    report = _history([[100.0], [100.0, 100.0]])
    report.sampler = "ddpm, 25 steps, guidance 2.0, seed 0"
    assert "oracle-feature FID 19.500 (final avg) at N = 100 generated vs M = 72 real images " in report.headline()
    report.write(str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert "N = 100 generated vs M = 72 real images per task" in md and "ddpm, 25 steps, guidance 2.0" in md
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["sample_sizes"]["unequal"] == [] and data["display_names"]["frechet"] == "oracle-feature FID"
    assert "num_generated" in data["matrices"] and "num_generated" not in data["summary"]
    assert not (tmp_path / "heatmap_num_generated.png").exists()


def test_fid_is_not_compared_across_unequal_sample_sizes(tmp_path):
    """Task 0's FID was measured with 100 samples, then with 50 (a resume with another --eval_num_samples): its
    forgetting would compare unequal N, so it is left out and the report says so."""
    report = _history([[100.0], [50.0, 50.0]])
    assert report.unequal_sample_sizes() == ["frechet"]
    assert set(report.summary()["frechet"]) == {"average_final", "average_incremental"}
    report.write(str(tmp_path))
    assert "**Not compared:** oracle-feature FID" in (tmp_path / "report.md").read_text()
