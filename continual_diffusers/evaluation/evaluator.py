"""Evaluate a model on every task seen so far: generate samples per task, judge them with the oracle against that
task's real test images. Returns one row of the continual matrices (see `report.py`).

Class-conditional models: per task i, `num_samples` images balanced over task i's classes →
    accuracy (oracle label == requested label), frechet (oracle-feature FID) and kid (oracle-feature KID, with its
    sd over subsets: kid_sd) vs task i's test images, and the sample sizes behind them: num_generated (N) and
    num_real (M, task i's test images).
Unconditional models: `num_samples × (number of seen tasks)` images →
    task_share[i] (fraction the oracle puts in task i's classes), task_share_normalised[i] (that share over task
    i's share of the seen tasks' test images, 1/(k+1) for equal tasks, capped at 1: a perfect model scores 1 on
    every task), and the global class_kl, frechet and kid vs the union of the seen tasks' test images, with N and M.

Memorisation and diversity (`memorisation.py`), when the evaluator is given the training tasks: copy_fraction
(samples that are near-copies of one training image), train_distance_ratio (samples' distance to the training set
over held-out real images'), precision and recall (k-NN manifolds vs the held-out images), per task for
class-conditional models, globally for unconditional ones. They tell a model that learned a class from one that
redraws a few memorised images (a small replay buffer), which accuracy and FID reward alike. They need at least
k + 1 = 4 samples and held-out images per task, and are left out (with a warning) below that.

Buffer attraction, when `evaluate` is given the replay buffer the model was trained with (`buffered`: task id →
uint8 images as the run stored them): buffer_attraction, the share of samples whose nearest training image (in
pixels) is a buffered one, and buffer_share, the buffered images' share of those training images (the value a
generator that does not favour its buffer gets). Class-conditional models: pooled over the tasks that have buffered
images, each task's samples against that task's training images; unconditional models: all samples against every
seen task's training images. Both are global metrics (one value per evaluation).
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
from .directions import HIGHER_IS_BETTER  # noqa: F401  (its former home: kept importable from here)
from .memorisation import (
    buffer_attraction,
    buffered_mask,
    copy_fraction,
    nearest_training_distance_ratio,
    precision_recall,
)
from .metrics import accuracy, class_histogram_kl, frechet_distance, kernel_inception_distance_with_sd

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
        self._train_pixels: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # (task, res) → images

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

    def _pixels_of(self, task_id: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A training task's images as the run stored them (uint8 (M, C, H', W'), what a replay buffer holds) and
        centre-cropped to `resolution` in [-1, 1] (M, C, res, res), the space of the samples."""
        key = (task_id, resolution)
        if key not in self._train_pixels:
            ds = TaskDataset(self.train_tasks[task_id], ImageTransform(resolution, center_crop=True))
            every = torch.arange(len(ds))
            self._train_pixels[key] = (ds.images[every], ds.batch(every)["images"])
        return self._train_pixels[key]

    def _buffered_mask(self, task_id: int, resolution: int, buffered: dict[int, torch.Tensor]) -> torch.Tensor:
        """Bool (M,): which of task `task_id`'s training images are in the buffer."""
        stored = self._pixels_of(task_id, resolution)[0]
        if task_id not in buffered:
            return torch.zeros(len(stored), dtype=torch.bool)
        return buffered_mask(stored, buffered[task_id])

    def buffer_attraction(
        self, groups: list[tuple[torch.Tensor, list[int]]], buffered: dict[int, torch.Tensor] | None
    ) -> dict[str, dict[int, float]]:
        """{"buffer_attraction": {0: value}, "buffer_share": {0: value}} (module docstring), pooled over groups of
        (samples (N, C, H, W) in [-1, 1], the task ids whose training images they are compared with); {} without
        a buffer or training tasks. `buffered`: as in `evaluate`. E.g. another run's samples (joint training's)
        against this run's buffer give the reference a replay run's value is read against."""
        if not buffered or self.train_tasks is None:
            return {}
        hits, num_samples, masks = 0.0, 0, []
        for samples, task_ids in groups:
            if not any(len(buffered.get(t, ())) for t in task_ids):
                continue  # e.g. the first task, or the newest one: nothing of it was replayed
            res = samples.shape[-1]
            try:
                mask = torch.cat([self._buffered_mask(t, res, buffered) for t in task_ids])
            except ValueError as error:  # e.g. a latent model's buffer holds latents, not images
                logger.warning("buffer attraction skipped: %s", error)
                return {}
            train = torch.cat([self._pixels_of(t, res)[1] for t in task_ids])
            hits += buffer_attraction(samples.float().cpu().flatten(1), train.flatten(1), mask) * len(samples)
            num_samples += len(samples)
            masks.append(mask)
        if num_samples == 0:
            return {}
        share = float(torch.cat(masks).double().mean())
        return {"buffer_attraction": {0: hits / num_samples}, "buffer_share": {0: share}}

    def evaluate(
        self,
        model,
        conditioning,
        train_scheduler,
        seen_tasks: list[int],
        classes_per_task: dict[str, list[int]],
        device,
        buffered: dict[int, torch.Tensor] | None = None,
    ) -> dict[str, dict[int, float]]:
        """{metric: {task_id: value}} for per-task metrics plus {metric: {0: value}} for global ones.

        How the samples are drawn and scored is the kind's `oracle_evaluation`: "per_class" (class-conditional) or
        "pooled" (unconditional). `classes_per_task`: task id (an int, or its string as in continual_diffusers.json)
        → class ids. `buffered`: the replay buffer the model was trained with, task id → uint8 (B, C, H, W) as the
        run stored the images (`strategies.replay.replayed_images`); None or {}: no buffer attraction."""
        per_task = _by_task_id(classes_per_task)
        if conditioning.oracle_evaluation == "per_class":
            out, groups = self._evaluate_conditional(
                model, conditioning, train_scheduler, seen_tasks, per_task, device
            )
        elif conditioning.oracle_evaluation == "pooled":
            out, groups = self._evaluate_unconditional(
                model, conditioning, train_scheduler, seen_tasks, per_task, device
            )
        else:
            raise UserInputError(
                f"per-task metrics need class labels: {conditioning.description} models get sample grids only"
            )
        return out | self.buffer_attraction(groups, buffered)

    def task_samples(self, model, conditioning, scheduler, task_id: int, classes_per_task: dict, device):
        """(labels, images (N, C, H, W) in [-1, 1]) of a class-conditional model's `num_samples` evaluation samples
        of task `task_id`, balanced over its classes and seeded per task: the samples `evaluate` judges."""
        classes = _by_task_id(classes_per_task)[task_id]
        labels = [classes[j % len(classes)] for j in range(self.num_samples)]
        options = _with_seed(self.options, task_id)
        images = generate_samples(model, conditioning, scheduler, labels, options, device, desc=f"eval task {task_id}")
        return labels, images

    def _quality(self, feats: torch.Tensor, real_feats: torch.Tensor) -> dict[str, float]:
        """Oracle-feature FID and KID (with its sd over subsets) of N samples vs M real images, with N and M. Both
        need N, M ≥ 2 (a covariance, an unbiased MMD²): below that only N and M are returned, and the report says
        which task left them out (`ContinualReport.left_out`)."""
        sizes = {"num_generated": float(feats.shape[0]), "num_real": float(real_feats.shape[0])}
        if min(feats.shape[0], real_feats.shape[0]) < 2:
            logger.warning(
                "oracle-feature FID and KID skipped: they need at least 2 generated and 2 real images "
                "(N = %d, M = %d)", feats.shape[0], real_feats.shape[0],
            )  # fmt: skip
            return sizes
        kid, kid_sd = kernel_inception_distance_with_sd(
            feats, real_feats, generator=make_generator(self.options.seed, "kid")
        )
        return {
            "frechet": frechet_distance(feats, real_feats),
            "kid": kid,
            "kid_sd": kid_sd,
            **sizes,
        }

    def _evaluate_conditional(self, model, conditioning, scheduler, seen, classes_per_task, device):
        out: dict[str, dict[int, float]] = {"accuracy": {}}
        groups = []
        for task_id in seen:
            labels, images = self.task_samples(model, conditioning, scheduler, task_id, classes_per_task, device)
            predicted, feats = self._judge(images)
            _, real_feats = self._real_of(task_id)
            out["accuracy"][task_id] = accuracy(predicted, torch.tensor(labels))
            measures = self._quality(feats, real_feats) | self._memorisation(feats, [task_id])
            for name, value in measures.items():
                out.setdefault(name, {})[task_id] = value
            groups.append((images, [task_id]))
        return out, groups

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
            "task_share_normalised": {},
            "class_kl": {0: class_histogram_kl(predicted, true_probs)},
        }
        out.update({name: {0: value} for name, value in self._quality(feats, torch.cat([r[1] for r in real])).items()})
        for task_id in seen:
            task_classes = torch.tensor(classes_per_task[task_id])
            share = float(torch.isin(predicted, task_classes).float().mean())
            expected = float(torch.isin(real_labels, task_classes).float().mean())  # 1/(k+1) for equal tasks
            out["task_share"][task_id] = share
            out["task_share_normalised"][task_id] = min(1.0, share / expected) if expected > 0 else 1.0
        out.update({name: {0: value} for name, value in self._memorisation(feats, list(seen)).items()})
        return out, [(images, list(seen))]


def _by_task_id(classes_per_task: dict) -> dict[int, list[int]]:
    """{task id: class ids} with int keys, from a `ModelSpec`'s mapping or continual_diffusers.json's strings."""
    return {int(t): list(classes) for t, classes in classes_per_task.items()}


def _with_seed(options: SamplerOptions, task_id: int) -> SamplerOptions:
    from dataclasses import replace

    return replace(options, seed=options.seed * 1000 + task_id)
