"""Shared fixtures: tiny task files (8×8 images, 2 tasks), a tiny offline CLIP, and the flags of a tiny UNet."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from continual_diffusers.data import Task, TaskSequence, save_tasks

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

# A UNet of a few thousand parameters, a 10-step schedule and 2-step validation sampling: seconds per run.
TINY_FLAGS = [
    "--block_out_channels",
    "8",
    "16",
    "--norm_num_groups",
    "4",
    "--layers_per_block",
    "1",
    "--ddpm_num_steps",
    "10",
    "--ddpm_num_inference_steps",
    "2",
    "--eval_batch_size",
    "1",
    "--train_batch_size",
    "4",
    "--logger",
    "none",
    "--seed",
    "0",
]


def make_tasks(kind: str = "class", num_tasks: int = 2, per_task: int = 8, channels: int = 3, size: int = 8):
    rng = np.random.default_rng(0)
    tasks = []
    for k in range(1, num_tasks + 1):
        images = rng.integers(0, 256, (per_task, size, size, channels), dtype=np.uint8)
        classes = np.array([2 * k - 2, 2 * k - 1]).repeat(per_task // 2)
        labels = {"class": classes, "text": np.array([f"digit {c}" for c in classes]), "none": None}[kind]
        tasks.append(Task(k, images, labels))
    return TaskSequence(tuple(tasks))


@pytest.fixture
def task_file(tmp_path):
    def write(kind: str = "class", **kw) -> str:
        path = str(tmp_path / f"tasks_{kind}.npz")
        save_tasks(path, make_tasks(kind, **kw))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> str:
    from tiny_clip import write_tiny_clip

    return write_tiny_clip(str(tmp_path_factory.mktemp("tiny_clip")))


def tiny_class_unet(num_class_embeds: int, channels: int = 3):
    """A seeded attention-free class-conditional UNet2DModel at 8×8 (blocks (8, 16))."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=num_class_embeds,
    )
