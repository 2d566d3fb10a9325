"""Batches as the library passes them around: a dict with "images" (a (B, C, H, W) tensor) and, for labelled data,
"labels" (long (B,) class ids or B captions), and the helpers that assemble them: `collate` (from `TaskDataset`
items, for a `DataLoader`), `concat_batches` (the one place batches are concatenated: the trainer's task batch
with a replay batch, the combined strategy's replay batches), `concat_labels` and `take_labels`.
"""

from __future__ import annotations

import torch

Labels = torch.Tensor | list[str] | None  # long (N,) class ids, N captions, or no labels


def concat_labels(parts: list[Labels]) -> Labels:
    """Labels of several batches in order: long class ids concatenated, or captions as one list."""
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else [label for part in parts for label in part]


def concat_batches(
    batches: list[dict], mismatch: str = "batches to concatenate must all carry labels or none"
) -> dict:
    """One batch from `batches` in order: "images" (B, C, H, W) concatenated, and "labels" (long tensor or captions)
    when every batch has them; `ValueError(mismatch)` when only some do (dropping them would silently train a
    conditional model unconditionally). Other keys (a replay batch's "loss_weight") are left to the caller."""
    out = {"images": torch.cat([b["images"] for b in batches])}
    if all("labels" in b for b in batches):
        out["labels"] = concat_labels([b["labels"] for b in batches])
    elif any("labels" in b for b in batches):
        raise ValueError(mismatch)
    return out


def take_labels(labels: Labels, indices: torch.Tensor) -> Labels:
    """The labels of items `indices` (long (B,)), of the same kind as `labels`."""
    if labels is None:
        return None
    if isinstance(labels, torch.Tensor):
        return labels[indices]
    return [labels[i] for i in indices.tolist()]


def collate(examples: list[dict]) -> dict:
    """Collate `TaskDataset` items for a `DataLoader`: images (B, C, H, W); labels long (B,) or list[str]."""
    batch: dict = {"images": torch.stack([example["images"] for example in examples])}
    if "labels" in examples[0]:
        labels = [example["labels"] for example in examples]
        batch["labels"] = labels if isinstance(labels[0], str) else torch.tensor(labels, dtype=torch.long)
    return batch
