"""End-of-task callbacks: what a run writes after each task, once training and the strategy's `after_task` are done.

The trainer calls `trainer.end_of_task` (default `END_OF_TASK`) on the main process, in order, each as
`callback(trainer, end)` with `end` a `TaskEnd` they share:

1. `export_model`: output_dir/task_<id>/ (`export.export_task`); `end.model` becomes the inference model (the EMA
   weights when trained with EMA), a copy the later callbacks sample from.
2. `validation_samples`: task_<id>/samples.png (`ValidationSampler`; kinds that reconstruct images, slot models,
   reconstruct reference images of every seen task, `slot_references`).
3. `tensorboard_samples`: that grid as a TensorBoard image.
4. `evaluate`: the end-of-task evaluation (`trainer.task_eval`), its metrics logged to the trackers.
5. `model_cards`: README.md model cards in task_<id>/ and output_dir/, with the metrics so far.

The order is that of the writes (and of the random draws of sampling and evaluation): keep it when adding one.
Each callback's wall time is kept in `TaskEnd.seconds` (the trainer logs it with the task end's other costs).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..data import Task
from ..strategies.replay import replayed_images
from ..utils.logging import get_logger
from . import export, model_card

logger = get_logger(__name__)


@dataclass
class TaskEnd:
    """What the end-of-task callbacks share."""

    task: Task
    task_dir: str  # output_dir/task_<id>/
    model: torch.nn.Module | None = None  # the inference model (set by `export_model`)
    samples_path: str | None = None  # samples.png (set by `validation_samples`)
    seconds: dict[str, float] = field(default_factory=dict)  # callback name → its wall time


def run_end_of_task(trainer, task: Task) -> TaskEnd:
    """Call `trainer.end_of_task` in order for `task`; returns what they shared."""
    end = TaskEnd(task, os.path.join(trainer.cfg.output_dir, f"task_{task.task_id}"))
    for callback in trainer.end_of_task:
        start = time.perf_counter()
        callback(trainer, end)
        end.seconds[getattr(callback, "__name__", type(callback).__name__)] = time.perf_counter() - start
    return end


def export_model(trainer, end: TaskEnd) -> None:
    end.model = export.export_task(trainer, end.task)


def validation_samples(trainer, end: TaskEnd) -> None:
    references = slot_references(trainer) if trainer.conditioning.reconstructs_references else None
    pos = trainer.position
    end.samples_path = trainer.validator.save(
        end.model, end.task_dir, trainer.spec, pos.seen_tasks, trainer.accelerator.device, references
    )
    logger.info("task %d done: model in %s, samples in %s", end.task.task_id, end.task_dir, end.samples_path)


def tensorboard_samples(trainer, end: TaskEnd) -> None:
    for tracker in trainer.accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image(
                f"samples/task_{end.task.task_id}",
                trainer.validator.last_grid,
                trainer.position.global_step,
                dataformats="HWC",
            )


def evaluate(trainer, end: TaskEnd) -> None:
    task_eval = trainer.task_eval
    if task_eval is None:
        return
    task_id = end.task.task_id
    buffered = replayed_images(trainer.strategy)  # the buffer this task trained with: buffer attraction
    results = task_eval(end.model, task_id, list(trainer.position.seen_tasks), trainer.accelerator.device, buffered)
    flat = {f"eval/{metric}/task_{t}": v for metric, values in results.items() for t, v in values.items()}
    trainer.accelerator.log(flat, step=trainer.position.global_step)
    headline = task_eval.report.headline()
    logger.info("evaluation after task %d: %s (report: %s)", task_id, headline, task_eval.report_dir)


def model_cards(trainer, end: TaskEnd) -> None:
    model_card.write_model_cards(trainer, end.task)


END_OF_TASK: tuple[Callable, ...] = (export_model, validation_samples, tensorboard_samples, evaluate, model_cards)


def slot_references(trainer, per_task: int = 2) -> torch.Tensor:
    """The first `per_task` images of every seen task (B, C, H, W), with the same seeded crops/flips at every
    export: what a slot model's end-of-task samples reconstruct, so forgetting shows as reconstructions that
    drift from the same images task after task."""
    images = []
    for task in trainer._known_tasks.values():
        if task.task_id in trainer.position.seen_tasks:
            dataset = trainer.make_dataset(task)
            indices = torch.arange(min(per_task, len(dataset)))
            images.append(dataset.batch(indices, generator=torch.Generator().manual_seed(0))["images"])
    return torch.cat(images)
