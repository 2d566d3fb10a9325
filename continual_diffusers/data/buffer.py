"""`ReplayBuffer`: bounded storage of past tasks' images (uint8) and labels, plus the selection policies that decide
what it keeps. Storage and use are kept apart: `strategies/replay.py` decides how stored samples enter batches.

A policy is a small callable that, given the task ids (and class labels) of the held items followed by the new
task's items, returns the indices to keep. All randomness comes from an explicit `torch.Generator`, so two
processes given the same seed hold identical buffers and a resumed run rebuilds nothing. No file I/O happens here:
the checkpoint stores `state_dict()`. Labels are combined with the batch helpers of `batches`.

| policy                  | keeps                                                                            |
|-------------------------|----------------------------------------------------------------------------------|
| `NoData`                | nothing (plain fine-tuning)                                                      |
| `AllData`               | everything (joint training over the tasks seen so far: the upper bound)          |
| `TaskBalanced`          | `capacity` slots split evenly over past tasks, a uniform random subset per task  |
| `Reservoir`             | a uniform random subset of the whole stream (Vitter 1985, Algorithm R)           |
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..utils.errors import UserInputError
from .batches import Labels, concat_labels, take_labels


class SelectionPolicy(Protocol):
    def __call__(
        self,
        task_ids: torch.Tensor,
        labels: torch.Tensor | None,
        num_held: int,
        num_seen: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Indices to keep.

        Args:
            task_ids: long (M + N,): the M held items, then the N items of the new task.
            labels: long (M + N,) class ids, or None (captions and unlabelled data).
            num_held: M.
            num_seen: stream items offered before the new task's (≥ M).
            generator: the only source of randomness.

        Returns:
            long (K,) indices into the M + N items; their order is the new storage order.
        """


def balanced_quota(counts: list[int], total: int, generator: torch.Generator) -> list[int]:
    """Split `total` slots over bins holding `counts` items as evenly as possible (water-filling).

    A bin with fewer items than its share keeps all of them and its unused slots go to the others, so one small
    bin never shrinks everyone. Leftover single slots go to randomly chosen bins.

    Returns:
        per-bin quotas q_i ≤ counts[i] with Σ q_i = min(total, Σ counts).
    """
    quota = [0] * len(counts)
    open_bins = [i for i, c in enumerate(counts) if c > 0]
    remaining = min(total, sum(counts))
    while remaining > 0 and open_bins:
        share = remaining // len(open_bins)
        if share == 0:  # fewer slots than bins: one each to a random subset
            order = torch.randperm(len(open_bins), generator=generator)[:remaining].tolist()
            for j in order:
                quota[open_bins[j]] += 1
            break
        for i in open_bins:
            take = min(share, counts[i] - quota[i])
            quota[i] += take
            remaining -= take
        open_bins = [i for i in open_bins if quota[i] < counts[i]]
    return quota


def _random_subset(indices: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    return indices[torch.randperm(len(indices), generator=generator)[:num]].sort().values


class NoData:
    """Keeps nothing: replay is off and training is plain sequential fine-tuning."""

    def __call__(self, task_ids, labels, num_held, num_seen, generator) -> torch.Tensor:
        return torch.zeros(0, dtype=torch.long)


class AllData:
    """Keeps every item of every task: joint training over the tasks seen so far (unbounded memory)."""

    def __call__(self, task_ids, labels, num_held, num_seen, generator) -> torch.Tensor:
        return torch.arange(len(task_ids))


class TaskBalanced:
    """`capacity` slots split evenly over all tasks seen so far, a uniform random subset per task.

    This is what the earlier implementation called "reservoir". After each task every task's share is
    re-drawn as a random subset of what it already holds, so each task's share stays a uniform random subset of
    its original data. Quotas use `balanced_quota`, so Σ shares = min(capacity, items available) exactly.

    Args:
        capacity: total number of stored items (≥ 0).
        label_uniform: also balance class labels within each task (water-filling again: a rare class keeps all
            its items and its unused slots go to the other classes, instead of capping every class).
    """

    def __init__(self, capacity: int, label_uniform: bool = False):
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.label_uniform = label_uniform

    def __call__(self, task_ids, labels, num_held, num_seen, generator) -> torch.Tensor:
        if self.label_uniform and labels is None:
            raise ValueError("label-uniform selection needs integer class labels")
        tasks = task_ids.unique().tolist()
        members = [torch.nonzero(task_ids == k).flatten() for k in tasks]
        quotas = balanced_quota([len(m) for m in members], self.capacity, generator)
        kept = [self._select(m, q, labels, generator) for m, q in zip(members, quotas)]
        return torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)

    def _select(self, members: torch.Tensor, quota: int, labels, generator) -> torch.Tensor:
        if not self.label_uniform:
            return _random_subset(members, quota, generator)
        classes = labels[members]
        groups = [members[classes == c] for c in classes.unique().tolist()]
        label_quotas = balanced_quota([len(g) for g in groups], quota, generator)
        return torch.cat([_random_subset(g, q, generator) for g, q in zip(groups, label_quotas)]).sort().values


class Reservoir:
    """Reservoir sampling over the stream of all tasks' items (Vitter 1985, Algorithm R; Chaudhry et al. 2019).

    Item i of the stream (0-based) fills slot i while i < capacity; afterwards it replaces slot j ~ U{0, …, i}
    when j < capacity. Every item seen so far is then held with probability capacity / num_seen, whatever the
    task boundaries. Applying a task's replacements in stream order is vectorised: the last item drawn for a
    slot is the one that stays.

    Args:
        capacity: total number of stored items (≥ 0).
    """

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity

    def __call__(self, task_ids, labels, num_held, num_seen, generator) -> torch.Tensor:
        num_new = len(task_ids) - num_held
        position = torch.arange(num_seen, num_seen + num_new, dtype=torch.float64)  # stream index i
        # 1. Slot per new item: i itself while the reservoir fills, else j ~ U{0..i} (kept only if j < capacity).
        draw = (torch.rand(num_new, generator=generator, dtype=torch.float64) * (position + 1)).floor().long()
        slot = torch.where(position < self.capacity, position.long(), draw)
        hit = slot < self.capacity
        # 2. Slot owners: held items keep their slots unless a later new item overwrote them (last writer wins).
        size = min(self.capacity, num_seen + num_new)
        owner = torch.cat([torch.arange(num_held), torch.full((size - num_held,), -1, dtype=torch.long)])
        new_index = torch.arange(num_held, num_held + num_new)
        return owner.scatter_reduce(0, slot[hit], new_index[hit], reduce="amax")


class ReplayBuffer:
    """Past tasks' samples: uint8 images (N, C, H, W), labels, and the task id of each item.

    Images are stored exactly as the task's `TaskDataset` prepared them (uint8, resized once), so the buffer
    takes N·C·H·W bytes of image memory and replay applies the same crop/flip/scale transform as fresh data.

    Args:
        policy: decides what is kept after each `add_task` (see the module table).
    """

    def __init__(self, policy: SelectionPolicy):
        self.policy = policy
        self.images: torch.Tensor | None = None  # uint8 (N, C, H, W)
        self.labels: Labels = None  # long (N,) class ids or N captions
        self.task_ids = torch.zeros(0, dtype=torch.long)  # (N,) task of each item
        self.num_seen = 0  # stream items offered so far (reservoir sampling needs it)

    def __len__(self) -> int:
        return len(self.task_ids)

    @property
    def nbytes(self) -> int:
        """Bytes of stored image data (uint8: N·C·H·W)."""
        return 0 if self.images is None else self.images.numel() * self.images.element_size()

    def add_task(self, task_id: int, images: torch.Tensor, labels: Labels, generator: torch.Generator) -> None:
        """Offer one task's ORIGINAL data; the policy decides what of (held + new) stays.

        Args:
            task_id: the task the items belong to.
            images: uint8 (N, C, H, W).
            labels: long (N,) class ids, N captions, or None; of the same kind as the items already held.
            generator: source of the policy's random choices (derive it from the run seed and the task id).
        """
        self._check_new(images, labels)
        num_held, num_new = len(self), len(images)
        task_ids = torch.cat([self.task_ids, torch.full((num_new,), task_id, dtype=torch.long)])
        all_labels = _cat_labels(self.labels, labels) if num_held else labels
        class_labels = all_labels if isinstance(all_labels, torch.Tensor) else None
        keep = self.policy(task_ids, class_labels, num_held, self.num_seen, generator)
        old = keep < num_held
        kept_images = torch.empty((len(keep), *images.shape[1:]), dtype=torch.uint8)
        if num_held:
            kept_images[old] = self.images[keep[old]]
        kept_images[~old] = images[keep[~old] - num_held]
        self.images, self.task_ids = kept_images, task_ids[keep]
        self.labels = take_labels(all_labels, keep)
        self.num_seen += num_new

    def _check_new(self, images: torch.Tensor, labels: Labels) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"buffer images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        if len(self) and self.images.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"images of shape {tuple(images.shape[1:])} do not match the buffer's {tuple(self.images.shape[1:])}"
            )
        if len(self) and _label_kind(labels) != _label_kind(self.labels):
            raise ValueError(f"new labels are {_label_kind(labels)} but the buffer holds {_label_kind(self.labels)}")

    def sample_indices(self, num: int, generator: torch.Generator) -> torch.Tensor:
        """`num` uniform indices, without replacement when `num` ≤ len(self), else with. long (num,)."""
        if num <= len(self):
            return torch.randperm(len(self), generator=generator)[:num]
        return torch.randint(len(self), (num,), generator=generator)

    def get(self, indices: torch.Tensor) -> tuple[torch.Tensor, Labels]:
        """uint8 images (B, C, H, W) and their labels (long (B,), B captions or None)."""
        return self.images[indices], take_labels(self.labels, indices)

    def state_dict(self) -> dict:
        """Flat: "images" uint8, "task_ids" long, "labels" long or "captions" list[str], "num_seen" int, "policy"
        str (which policy, with which settings, made the buffer)."""
        state: dict = {"num_seen": self.num_seen, "task_ids": self.task_ids.clone(), "policy": self.policy_name}
        if self.images is not None:
            state["images"] = self.images.clone()
        if isinstance(self.labels, torch.Tensor):
            state["labels"] = self.labels.clone()
        elif self.labels is not None:
            state["captions"] = list(self.labels)
        return state

    @property
    def policy_name(self) -> str:
        """e.g. "TaskBalanced(capacity=143, label_uniform=True)"."""
        settings = ", ".join(f"{k}={v}" for k, v in vars(self.policy).items())
        return f"{type(self.policy).__name__}({settings})"

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("policy", self.policy_name)  # checkpoints before the policy was recorded: trusted
        if saved != self.policy_name:
            raise UserInputError(
                f"the checkpoint's replay buffer was made by {saved}, the flags now give {self.policy_name}: "
                "resume with the --buffer_type / --buffer_size / --retain_label_uniform_sampling of the run"
            )
        self.num_seen = int(state["num_seen"])
        self.task_ids = state["task_ids"].long()
        self.images = state.get("images")
        self.labels = state["labels"].long() if "labels" in state else state.get("captions")


def _label_kind(labels: Labels) -> str:
    return "none" if labels is None else "class" if isinstance(labels, torch.Tensor) else "text"


def _cat_labels(a: Labels, b: Labels) -> Labels:
    return None if a is None else concat_labels([a, b])
