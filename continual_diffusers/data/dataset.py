"""`TaskDataset`: one task's images (resized once) and labels, served as [-1, 1] tensors, item by item or by batch."""

from __future__ import annotations

import numpy as np
import torch

from continual_diffusers.data.lazy import LazyImages, PreparedImages
from continual_diffusers.data.task_sequence import LabelKind, Task
from continual_diffusers.data.transforms import ImageTransform


class TaskDataset(torch.utils.data.Dataset):
    """A torch `Dataset` over one `Task`.

    The images are converted to uint8 (N, C, H', W') and resized once, at construction; cropping, flipping and
    scaling to [-1, 1] happen per access. Items are `{"images": (C, res, res) float, "labels": int | str}`, with
    no "labels" key when the task has none.

    A lazy task (images in a task folder, `lazy.LazyImages`) is never loaded whole: each access reads and resizes
    only its images (`lazy.PreparedImages`), giving the same batches as the task held in memory.
    """

    def __init__(self, task: Task, transform: ImageTransform) -> None:
        self.task_id = task.task_id
        self.transform = transform
        self.labels: np.ndarray | None = task.labels
        self.label_kind: LabelKind = task.label_kind
        if isinstance(task.images, LazyImages):
            self._images: torch.Tensor | PreparedImages = PreparedImages(task.images, transform)
        else:
            self._images = transform.prepare(task.images)  # uint8 (N, C, H', W')

    @property
    def images(self) -> torch.Tensor | PreparedImages:
        """The task's images as prepared once (uint8 (N, C, H', W'), shorter side resized); read by replay. For a
        lazy task, a `PreparedImages` that prepares the images indexed (int, slice or long tensor) on access."""
        return self._images

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> dict:
        """One example; random augmentation draws from torch's global RNG (seeded per DataLoader worker)."""
        example: dict = {"images": self.transform(self._images[index : index + 1])[0]}
        if self.labels is not None:
            label = self.labels[index]
            example["labels"] = str(label) if self.label_kind == "text" else int(label)
        return example

    def batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """A whole batch in one call (no per-item Python loop over images).

        Args:
            indices: long (B,) example indices.
            generator: source of random crops and flips (None: torch's global RNG).

        Returns:
            {"images": float (B, C, res, res) in [-1, 1], "labels": long (B,) or list[str] of length B}; no
            "labels" key when the task has none.
        """
        indices = torch.as_tensor(indices, dtype=torch.long)
        batch: dict = {"images": self.transform(self._images[indices], generator)}
        if self.labels is not None:
            labels = self.labels[indices.numpy()]
            batch["labels"] = [str(x) for x in labels] if self.label_kind == "text" else torch.from_numpy(labels)
        return batch
