"""Evaluate a model on every task seen so far: generate samples per task, judge them with the oracle against that
task's real test images. Returns one row of the continual matrices (see `report.py`).

Class-conditional models: per task i, `num_samples` images balanced over task i's classes →
    accuracy (oracle label == requested label), frechet (feature FID) and kid vs task i's test images.
Unconditional models: `num_samples × (number of seen tasks)` images →
    task_share[i] (fraction the oracle puts in task i's classes), and the global class_kl and frechet vs the union
    of the seen tasks' test images.

Memorisation and diversity (`memorisation.py`), when the evaluator is given the training tasks: copy_fraction
(samples that are near-copies of one training image), train_distance_ratio (samples' distance to the training set
over held-out real images'), precision and recall (k-NN manifolds vs the held-out images), per task for
class-conditional models, globally for unconditional ones. They tell a model that learned a class from one that
redraws a few memorised images (a small replay buffer), which accuracy and FID reward alike. They need at least
k + 1 = 4 samples and held-out images per task, and are left out (with a warning) below that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import ImageTransform, TaskDataset, TaskSequence
from ..sampling.generate import SamplerOptions, generate_samples
from ..utils.errors import UserInputError
from ..utils.logging import get_logger
from ..utils.seed import make_generator
from .classifier import OracleCNN, predict
from .memorisation import (
    copy_fraction,
    nearest_training_distance_ratio,
    precision_recall,
)
from .metrics import accuracy, class_histogram_kl, frechet_distance, kernel_inception_distance

HIGHER_IS_BETTER = {
    "accuracy": True,
    "frechet": False,
    "kid": False,
    "task_share": True,
    "class_kl": False,
    "copy_fraction": False,
    "train_distance_ratio": True,  # 1: as far from the training set as new real images; → 0: copies
    "precision": True,
    "recall": True,
}
MANIFOLD_K = 3  # Kynkäänniemi et al. 2019's k
logger = get_logger(__name__)


class ContinualEvaluator:
    def __init__(
        self,
        oracle: OracleCNN,
        oracle_resolution: int,
        test_tasks: TaskSequence,
        num_samples: int,
        options: SamplerOptions,
        train_tasks: TaskSequence | None = None,
    ):
        """`train_tasks`: the run's training images, for the memorisation measures (None: not measured)."""
        if test_tasks.label_kind != "class":
            raise UserInputError("evaluation needs a test task file with class labels")
        self.oracle = oracle.eval()
        self.resolution = oracle_resolution
        self.test_tasks = test_tasks
        self.train_tasks = train_tasks
        self.num_samples = num_samples
        self.options = options
        self._real: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # task → (labels, features) of test images
        self._train: dict[int, torch.Tensor] = {}  # task → features of its training images

    def _features(self, tasks: TaskSequence, task_id: int, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, oracle features) of all images of `tasks[task_id]`, centre-cropped to the oracle's size."""
        if task_id not in tasks.task_ids:
            raise UserInputError(f"the {which} task file has no task {task_id} (it has {tasks.task_ids})")
        ds = TaskDataset(tasks[task_id], ImageTransform(self.resolution, center_crop=True))
        batch = ds.batch(torch.arange(len(ds)))
        return batch["labels"], predict(self.oracle, batch["images"])[1]

    def _real_of(self, task_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        if task_id not in self._real:
            self._real[task_id] = self._features(self.test_tasks, task_id, "test")
        return self._real[task_id]

    def _train_of(self, task_id: int) -> torch.Tensor:
        if task_id not in self._train:
            self._train[task_id] = self._features(self.train_tasks, task_id, "training")[1]
        return self._train[task_id]

    def _memorisation(self, feats: torch.Tensor, task_ids: list[int]) -> dict[str, float]:
        """Memorisation and diversity of samples' features (N, D) against the training and held-out images of
        `task_ids`; {} without training tasks or with too few samples for the k-NN manifolds."""
        if self.train_tasks is None:
            return {}
        train = torch.cat([self._train_of(t) for t in task_ids])
        heldout = torch.cat([self._real_of(t)[1] for t in task_ids])
        if min(feats.shape[0], heldout.shape[0]) <= MANIFOLD_K or train.shape[0] < 2:
            logger.warning(
                "memorisation measures skipped: they need more than %d samples and held-out images per task "
                "(--eval_num_samples %d, %d held-out images)", MANIFOLD_K, feats.shape[0], heldout.shape[0],
            )  # fmt: skip
            return {}
        precision, recall = precision_recall(heldout, feats, k=MANIFOLD_K)
        out = {"copy_fraction": copy_fraction(feats, train), "precision": precision, "recall": recall}
        try:
            out["train_distance_ratio"] = nearest_training_distance_ratio(feats, train, heldout)
        except ValueError:  # e.g. the same file given as training and test data: no held-out distance to compare
            logger.warning("train_distance_ratio skipped: the held-out images are (mostly) training images")
        return out

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
        """{metric: {task_id: value}} for per-task metrics plus {metric: {0: value}} for global ones. How the samples
        are drawn and scored is the kind's `oracle_evaluation`: "per_class" (class-conditional) or "pooled"
        (unconditional); `classes_per_task`: task id (an int, or its string as in continual_diffusers.json) →
        class ids."""
        per_task = {int(t): list(classes) for t, classes in classes_per_task.items()}
        if conditioning.oracle_evaluation == "per_class":
            return self._evaluate_conditional(model, conditioning, train_scheduler, seen_tasks, per_task, device)
        if conditioning.oracle_evaluation == "pooled":
            return self._evaluate_unconditional(model, conditioning, train_scheduler, seen_tasks, per_task, device)
        raise UserInputError(
            f"per-task metrics need class labels: {conditioning.description} models get sample grids only"
        )

    def _evaluate_conditional(self, model, conditioning, scheduler, seen, classes_per_task, device):
        out: dict[str, dict[int, float]] = {"accuracy": {}, "frechet": {}, "kid": {}}
        for task_id in seen:
            classes = classes_per_task[task_id]
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
            for name, value in self._memorisation(feats, [task_id]).items():
                out.setdefault(name, {})[task_id] = value
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
            in_task = torch.isin(predicted, torch.tensor(classes_per_task[task_id]))
            out["task_share"][task_id] = float(in_task.float().mean())
        out.update({name: {0: value} for name, value in self._memorisation(feats, list(seen)).items()})
        return out


def _with_seed(options: SamplerOptions, task_id: int) -> SamplerOptions:
    from dataclasses import replace

    return replace(options, seed=options.seed * 1000 + task_id)
