"""A batch larger than `TrainConfig.rows_per_pass` (task rows + replayed rows) runs in several forward/backward passes:
the gradient equals the one-pass gradient (score and energy models, weighted replay, EWC's penalty), no pass holds
more rows than the bound however large the buffer, and a strategy whose penalty reads the batch's predictions keeps
one pass. The trainer logs what each task's training and each part of its end cost."""

from __future__ import annotations

import logging

import pytest
import torch
from accelerate import Accelerator
from conftest import make_tasks, tiny_class_unet
from diffusers import DDPMScheduler

from continual_diffusers.config import SamplingConfig
from continual_diffusers.data import ImageTransform, ReplayBuffer, TaskBalanced, TaskDataset
from continual_diffusers.data.buffer import AllData
from continual_diffusers.models.conditioning import ClassConditioning
from continual_diffusers.models.denoiser import make_denoiser
from continual_diffusers.models.spec import ModelSpec
from continual_diffusers.objectives import DenoisingObjective
from continual_diffusers.strategies import EWC, CombinedStrategy, ContinualStrategy, Replay, TaskContext
from continual_diffusers.training import ContinualTrainer, TrainConfig
from continual_diffusers.training.batches import BatchSchedule, TrainingBatch, pass_slices


def test_pass_slices_cover_the_rows_in_near_equal_parts():
    assert pass_slices(54, 32) == [slice(0, 27), slice(27, 54)]
    assert pass_slices(32, 32) == [slice(0, 32)]
    assert pass_slices(1, 32) == [slice(0, 1)]
    for rows in range(1, 40):
        for per_pass in (1, 3, 7, 32):
            parts = pass_slices(rows, per_pass)
            sizes = [p.stop - p.start for p in parts]
            assert parts[0].start == 0 and parts[-1].stop == rows
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
            assert max(sizes) <= per_pass and max(sizes) - min(sizes) <= 1
            assert len(parts) == -(-rows // per_pass)
    with pytest.raises(ValueError):
        pass_slices(4, 0)


def test_rows_of_a_batch_count_their_replayed_rows():
    batch = TrainingBatch(torch.zeros(8, 1, 2, 2), torch.zeros(8, 1, 2, 2), torch.zeros(8), {"y": torch.arange(8)},
                          None, num_replay=3)  # fmt: skip
    assert [batch.rows(p).num_replay for p in pass_slices(8, 3)] == [0, 0, 3]  # rows 0-2, 3-4, 5-7
    assert [batch.rows(p).num_replay for p in (slice(0, 4), slice(4, 6), slice(6, 8))] == [0, 1, 2]
    assert batch.rows(slice(5, 8)).cond["y"].tolist() == [5, 6, 7]


def _trainer(strategy, energy=None, rows_per_pass=None, tmp_path="unused", **settings):
    validation = SamplingConfig(num_inference_steps=2, num_samples=1)
    cfg = TrainConfig(output_dir=str(tmp_path), train_batch_size=4, rows_per_pass=rows_per_pass, uncond_p=0.2,
                      max_train_steps=2, validation=validation, **settings)  # fmt: skip
    scheduler = DDPMScheduler(num_train_timesteps=10)
    denoiser = make_denoiser(tiny_class_unet(5), energy)
    tasks = make_tasks(num_tasks=2, per_task=8)
    transform = ImageTransform(8, random_flip=True)
    conditioning = ClassConditioning(4, null_class=True)
    spec = ModelSpec.for_run(tasks, conditioning, energy_type=energy, prediction_type="epsilon",
                             classifier_free_guidance=True, resolution=8)  # fmt: skip
    trainer = ContinualTrainer(
        Accelerator(cpu=True), denoiser, conditioning,
        DenoisingObjective(scheduler, "epsilon"), strategy, cfg, lambda task: TaskDataset(task, transform), spec,
    )  # fmt: skip
    return trainer, tasks


def _after_first_task(trainer, tasks):
    """Task 1 done for the strategy (buffer filled, Fisher estimated); returns task 2's dataset and schedule."""
    first, second = tasks
    context = TaskContext(
        1, trainer.make_dataset(first), trainer.objective, trainer.encode_labels, torch.device("cpu"), 0
    )
    trainer.strategy.after_task(trainer.model, context)
    trainer.strategy.before_task(trainer.model, 2)
    return trainer.make_dataset(second), BatchSchedule(len(second), 4, 1, 0, 0, 2)


def _gradient(trainer, batch: TrainingBatch) -> tuple[list[torch.Tensor], float]:
    trainer.model.zero_grad(set_to_none=True)
    value, _, _ = trainer._backward(trainer.model, batch)
    return [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None], value


def _replay(buffer_policy=None, loss_weight=1.0) -> Replay:
    policy = buffer_policy or TaskBalanced(8)
    return Replay(ReplayBuffer(policy), ImageTransform(8), {1: 8, 2: 8}, loss_weight=loss_weight)


@pytest.mark.parametrize(
    ("energy", "make_strategy"),
    [
        (None, lambda: _replay()),
        ("dae", lambda: _replay(loss_weight=0.5)),
        (None, lambda: CombinedStrategy([_replay(), EWC(lambda_=50.0, num_samples=4, num_timesteps=1)])),
    ],
    ids=["score-replay", "energy-weighted-replay", "score-replay+ewc"],
)
def test_passes_give_the_one_pass_gradient(energy, make_strategy):
    trainer, tasks = _trainer(make_strategy(), energy, rows_per_pass=3)
    dataset, schedule = _after_first_task(trainer, tasks)
    if trainer.strategy.name != "replay":  # EWC: move away from the anchor so the penalty has a gradient
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.add_(0.01 * torch.randn_like(p))
    batch = trainer._batch(dataset, schedule, 2, 0)
    assert batch.num_rows == 8 and batch.num_replay == 4  # 4 task rows + 4·8/8 replayed rows: 3 passes
    split, split_value = _gradient(trainer, batch)
    trainer.cfg.rows_per_pass = 8
    whole, whole_value = _gradient(trainer, batch)
    assert split_value == pytest.approx(whole_value, rel=1e-5)
    for a, b in zip(split, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_no_pass_holds_more_rows_than_the_bound_whatever_the_buffer():
    trainer, tasks = _trainer(_replay(AllData()), rows_per_pass=3)
    dataset, schedule = _after_first_task(trainer, tasks)
    seen: list[int] = []
    trainer.model.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    batch = trainer._batch(dataset, schedule, 2, 0)
    trainer._backward(trainer.model, batch)
    assert sum(seen) == batch.num_rows == 8 and max(seen) <= 3


class _ReadsPredictions(Replay):
    """A penalty that reads the batch's predictions (like a distillation loss): needs the whole batch at once."""

    rows_seen: list[int] = []

    def penalty(self, model, out):
        self.rows_seen.append((out.x_t.shape[0], out.num_replay))
        return out.prediction.float().pow(2).mean() * 0.0


def test_a_penalty_reading_the_predictions_keeps_one_pass():
    strategy = _ReadsPredictions(ReplayBuffer(TaskBalanced(8)), ImageTransform(8), {1: 8, 2: 8})
    assert strategy.penalty_reads_output and not _replay().penalty_reads_output
    assert not EWC(lambda_=1.0).penalty_reads_output
    assert CombinedStrategy([EWC(lambda_=1.0), strategy]).penalty_reads_output
    trainer, tasks = _trainer(strategy, rows_per_pass=3)
    dataset, schedule = _after_first_task(trainer, tasks)
    trainer._backward(trainer.model, trainer._batch(dataset, schedule, 2, 0))
    assert strategy.rows_seen == [(8, 4)]


def test_a_strategy_without_a_penalty_may_split():
    class Plain(ContinualStrategy):
        pass

    assert not Plain().penalty_reads_output


def test_task_training_and_task_end_costs_are_logged(tmp_path, caplog):
    trainer, tasks = _trainer(_replay(), tmp_path=tmp_path)
    with caplog.at_level(logging.INFO, logger="continual_diffusers"):
        trainer.train_task(tasks[1])
    text = caplog.text
    assert "task 1 trained: 2 optimizer steps, 8 rows (0 replayed)" in text
    end = next(line for line in text.splitlines() if "task 1 end:" in line)
    for part in ("after_task", "export_model", "validation_samples", "model_cards", "checkpoint"):
        assert f"{part} " in end
