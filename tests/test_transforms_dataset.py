"""Transforms (ranges, resize, crops, flips, determinism) and `TaskDataset` (items, batches, collate, grayscale)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from continual_diffusers.data import ImageTransform, Task, TaskDataset, collate
from continual_diffusers.data.transforms import (
    center_crop,
    from_unit_range,
    random_crop,
    random_flip,
    resize_shorter_side,
    to_unit_range,
)


def uint8_images(n: int, height: int, width: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, height, width), dtype=torch.uint8, generator=generator)


def test_unit_range_round_trip_is_exact():
    values = torch.arange(256, dtype=torch.uint8)
    x = to_unit_range(values)
    assert x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    assert torch.equal(from_unit_range(x), values)
    assert torch.equal(from_unit_range(torch.tensor([-3.0, 0.0, 5.0])), torch.tensor([0, 128, 255], dtype=torch.uint8))


@pytest.mark.parametrize(
    "height, width, expected", [(8, 12, (4, 6)), (12, 8, (6, 4)), (10, 10, (4, 4)), (3, 5, (6, 10))]
)
def test_resize_shorter_side_keeps_aspect_ratio(height, width, expected):
    out = resize_shorter_side(uint8_images(2, height, width), 6 if height == 3 else 4)
    assert out.dtype == torch.uint8 and tuple(out.shape) == (2, 3, *expected)


def test_resize_is_identity_at_target_size_and_preserves_constants():
    images = uint8_images(2, 4, 7)
    assert resize_shorter_side(images, 4) is images
    constant = torch.full((1, 1, 16, 24), 77, dtype=torch.uint8)
    assert torch.equal(resize_shorter_side(constant, 8), torch.full((1, 1, 8, 12), 77, dtype=torch.uint8))


def test_resize_matches_pil_bilinear_downsampling():
    image = uint8_images(1, 32, 48, seed=3)
    ours = resize_shorter_side(image, 16)[0].permute(1, 2, 0).numpy().astype(int)
    pil = np.asarray(Image.fromarray(image[0].permute(1, 2, 0).numpy()).resize((24, 16), Image.BILINEAR)).astype(int)
    assert np.abs(ours - pil).max() <= 1


def test_center_crop_takes_the_middle():
    images = torch.arange(2 * 6 * 8, dtype=torch.uint8).reshape(1, 2, 6, 8)
    assert torch.equal(center_crop(images, 4), images[..., 1:5, 2:6])


def test_random_crop_is_per_sample_deterministic_and_a_window_of_the_input():
    images = uint8_images(64, 6, 9)
    crops = random_crop(images, 5, torch.Generator().manual_seed(1))
    assert torch.equal(crops, random_crop(images, 5, torch.Generator().manual_seed(1)))
    assert not torch.equal(crops, random_crop(images, 5, torch.Generator().manual_seed(2)))
    offsets = set()
    for image, crop in zip(images, crops, strict=True):
        matches = [(i, j) for i in range(2) for j in range(5) if torch.equal(image[:, i : i + 5, j : j + 5], crop)]
        assert matches, "every crop is a window of its own image"
        offsets.add(matches[0])
    assert len(offsets) > 5  # offsets differ between samples


def test_random_flip_is_per_sample_and_deterministic():
    images = uint8_images(64, 4, 4)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    assert torch.equal(flipped, random_flip(images, torch.Generator().manual_seed(0)))
    was_flipped = [torch.equal(out, image.flip(-1)) for out, image in zip(flipped, images, strict=True)]
    kept = [torch.equal(out, image) for out, image in zip(flipped, images, strict=True)]
    assert all(f or k for f, k in zip(was_flipped, kept, strict=True))
    assert 10 < sum(was_flipped) < 54


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("center, flip", [(True, False), (False, True)])
def test_image_transform_output(channels, center, flip):
    transform = ImageTransform(resolution=8, center_crop=center, random_flip=flip)
    prepared = transform.prepare(np.random.default_rng(0).integers(0, 256, (5, 12, 16, channels), dtype=np.uint8))
    assert prepared.dtype == torch.uint8 and tuple(prepared.shape) == (5, channels, 8, 10)
    out = transform(prepared, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and tuple(out.shape) == (5, channels, 8, 8)
    assert out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, transform(prepared, torch.Generator().manual_seed(0)))


def test_image_transform_rejects_unprepared_batches():
    with pytest.raises(ValueError, match="prepared to resolution 8"):
        ImageTransform(8)(uint8_images(1, 16, 16))


def make_task(labels, channels: int = 3, n: int = 6) -> Task:
    images = np.random.default_rng(0).integers(0, 256, (n, 10, 12, channels), dtype=np.uint8)
    return Task(1, images, labels)


@pytest.mark.parametrize("channels", [1, 3])
def test_batch_equals_stacked_items_with_center_crop(channels):
    dataset = TaskDataset(make_task([0, 1, 2, 3, 4, 5], channels), ImageTransform(8))
    indices = torch.tensor([4, 0, 3])
    batch = dataset.batch(indices)
    items = [dataset[int(i)] for i in indices]
    assert torch.equal(batch["images"], torch.stack([item["images"] for item in items]))
    assert tuple(batch["images"].shape) == (3, channels, 8, 8)
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [4, 0, 3]
    assert [item["labels"] for item in items] == [4, 0, 3] and isinstance(items[0]["labels"], int)
    collated = collate(items)
    assert torch.equal(collated["images"], batch["images"]) and torch.equal(collated["labels"], batch["labels"])


def test_text_labels_and_no_labels():
    captions = [f"caption {i}" for i in range(6)]
    text = TaskDataset(make_task(captions), ImageTransform(8))
    assert text.label_kind == "text" and text[2]["labels"] == "caption 2" and type(text[2]["labels"]) is str
    assert text.batch(torch.tensor([1, 5]))["labels"] == ["caption 1", "caption 5"]
    assert collate([text[0], text[1]])["labels"] == ["caption 0", "caption 1"]
    unlabelled = TaskDataset(make_task(None), ImageTransform(8))
    assert len(unlabelled) == 6 and "labels" not in unlabelled[0]
    assert "labels" not in unlabelled.batch(torch.arange(3)) and "labels" not in collate([unlabelled[0]])


def test_random_batches_are_reproducible_and_dataloader_works():
    dataset = TaskDataset(make_task(list(range(6))), ImageTransform(8, center_crop=False, random_flip=True))
    first = dataset.batch(torch.arange(6), torch.Generator().manual_seed(5))["images"]
    assert torch.equal(first, dataset.batch(torch.arange(6), torch.Generator().manual_seed(5))["images"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, collate_fn=collate)
    batches = list(loader)
    assert [len(b["labels"]) for b in batches] == [4, 2]
    assert sorted(torch.cat([b["labels"] for b in batches]).tolist()) == list(range(6))
