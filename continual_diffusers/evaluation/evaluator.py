"""Evaluate a model on every task seen so far: generate samples per task, judge them with the oracle against that
task's real test images. Returns one row of the continual matrices (see `report.py`).

Class-conditional models: per task i, `num_samples` images balanced over task i's classes →
    accuracy (oracle label == requested label), frechet (feature FID) and kid vs task i's test images.
Unconditional models: `num_samples × (number of seen tasks)` images →
    task_share[i] (fraction the oracle puts in task i's classes), and the global class_kl and frechet vs the union
    of the seen tasks' test images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import ImageTransform, TaskDataset, TaskSequence
from ..sampling.generate import SamplerOptions, generate_samples
from ..utils.errors import UserInputError
from ..utils.seed import make_generator
from .classifier import OracleCNN, predict
from .metrics import accuracy, class_histogram_kl, frechet_distance, kernel_inception_distance

HIGHER_IS_BETTER = {"accuracy": True, "frechet": False, "kid": False, "task_share": True, "class_kl": False}


class ContinualEvaluator:
    def __init__(
        self,
        oracle: OracleCNN,
        oracle_resolution: int,
        test_tasks: TaskSequence,
        num_samples: int,
        options: SamplerOptions,
    ):
        if test_tasks.label_kind != "class":
            raise UserInputError("evaluation needs a test task file with class labels")
        self.oracle = oracle.eval()
        self.resolution = oracle_resolution
        self.test_tasks = test_tasks
        self.num_samples = num_samples
        self.options = options
        self._real: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # task → (labels, features) of test images

    def _real_of(self, task_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        if task_id not in self._real:
            if task_id not in self.test_tasks.task_ids:
                raise UserInputError(f"the test task file has no task {task_id} (it has {self.test_tasks.task_ids})")
            ds = TaskDataset(self.test_tasks[task_id], ImageTransform(self.resolution, center_crop=True))
            batch = ds.batch(torch.arange(len(ds)))
            self._real[task_id] = (batch["labels"], predict(self.oracle, batch["images"])[1])
        return self._real[task_id]

    def _judge(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.float().cpu()
        if images.shape[-1] != self.resolution:
            images = F.interpolate(images, size=(self.resolution,) * 2, mode="bilinear", antialias=True)
        return predict(self.oracle, images)

    def evaluate(
        self,
        model,
        conditioning,
        train_scheduler,
        seen_tasks: list[int],
        classes_per_task: dict[str, list[int]],
        device,
    ) -> dict[str, dict[int, float]]:
        """{metric: {task_id: value}} for per-task metrics plus {metric: {0: value}} for global ones."""
        if conditioning.kind == "class":
            return self._evaluate_conditional(
                model, conditioning, train_scheduler, seen_tasks, classes_per_task, device
            )
        if conditioning.kind == "none":
            return self._evaluate_unconditional(
                model, conditioning, train_scheduler, seen_tasks, classes_per_task, device
            )
        raise UserInputError("per-task metrics need class labels: text-conditioned models get sample grids only")

    def _evaluate_conditional(self, model, conditioning, scheduler, seen, classes_per_task, device):
        out: dict[str, dict[int, float]] = {"accuracy": {}, "frechet": {}, "kid": {}}
        for task_id in seen:
            classes = classes_per_task[str(task_id)]
            labels = [classes[j % len(classes)] for j in range(self.num_samples)]
            options = _with_seed(self.options, task_id)
            desc = f"eval task {task_id}"
            images = generate_samples(model, conditioning, scheduler, labels, options, device, desc=desc)
            predicted, feats = self._judge(images)
            _, real_feats = self._real_of(task_id)
            out["accuracy"][task_id] = accuracy(predicted, torch.tensor(labels))
            out["frechet"][task_id] = frechet_distance(feats, real_feats)
            out["kid"][task_id] = kernel_inception_distance(
                feats, real_feats, generator=make_generator(self.options.seed, "kid")
            )
        return out

    def _evaluate_unconditional(self, model, conditioning, scheduler, seen, classes_per_task, device):
        images = generate_samples(
            model,
            conditioning,
            scheduler,
            [None] * (self.num_samples * len(seen)),
            _with_seed(self.options, 0),
            device,
            desc="eval samples",
        )
        predicted, feats = self._judge(images)
        real = [self._real_of(t) for t in seen]
        real_labels = torch.cat([r[0] for r in real])
        num_classes = int(self.oracle.config["num_classes"])
        true_probs = torch.bincount(real_labels, minlength=num_classes).double()
        out = {
            "task_share": {},
            "class_kl": {0: class_histogram_kl(predicted, true_probs)},
            "frechet": {0: frechet_distance(feats, torch.cat([r[1] for r in real]))},
        }
        for task_id in seen:
            in_task = torch.isin(predicted, torch.tensor(classes_per_task[str(task_id)]))
            out["task_share"][task_id] = float(in_task.float().mean())
        return out


def _with_seed(options: SamplerOptions, task_id: int) -> SamplerOptions:
    from dataclasses import replace

    return replace(options, seed=options.seed * 1000 + task_id)
