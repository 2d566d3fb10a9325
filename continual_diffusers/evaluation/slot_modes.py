"""evaluate.py's modes for slot-conditioned models (`--slot_mode`, flags: `config.sampling.SlotModeConfig`):
reconstruction from an image's slots, sheets of the slot attention masks (with FG-ARI when ground-truth masks sit
next to the task file), and composition of slots taken from several images. Sampling goes through
`sampling.generate`, so every scheduler, guidance and the annealed MCMC samplers apply unchanged.

Compositions (`--compose_slots`):
- `concat` (default; Latent Slot Diffusion's slot swapping): one condition made of chosen slots of several images.
  `--compose_slots 3 7` = image 3's background slot + the object slots of images 3 and 7; `3:0,2 7:1` = exactly
  those slots (the background slot of an image is the one with the most attention mass).
- `product`: each listed image's whole slot set is one concept, ε = ε_∅ + Σ_k w_k (ε_k − ε_∅) (Liu et al. 2022),
  with the learned null slot set as ∅ (needs a model trained with CFG); weights from --composition_weights.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from ..config.generation import composition_weights
from ..config.sampling import DEFAULT_SLOT_IMAGES, SlotModeConfig
from ..models.conditioning import SlotConditioning
from ..utils.errors import UserInputError
from ..utils.logging import get_logger

logger = get_logger(__name__)


def parse_compose_spec(specs: list[str]) -> list[tuple[int, list[int] | None]]:
    """ "3" → (3, None) (automatic slots); "3:0,2" → (3, [0, 2])."""
    picks = []
    for spec in specs:
        index, _, slots = spec.partition(":")
        try:
            picks.append((int(index), [int(k) for k in slots.split(",")] if slots else None))
        except ValueError:
            raise UserInputError(f'--compose_slots entries are "i" or "i:k1,k2" with integers, got {spec!r}') from None
    return picks


def _source_images(mode: SlotModeConfig, spec) -> tuple[torch.Tensor, np.ndarray | None, list[int]]:
    """Source images (N, C, H, W) in [-1, 1] at the model's resolution, their masks if a .masks.npz sits next to the
    task file, and their indices in the task."""
    from ..data import ImageTransform, load_tasks
    from ..data.shapes import load_masks, masks_path

    path = mode.slot_data or spec.data_path
    if not path or not os.path.isfile(path):
        raise UserInputError(f"--slot_mode needs --slot_data (a task file of source images); {path!r} is not a file")
    tasks = load_tasks(path)
    task_id = mode.slot_task if mode.slot_task is not None else spec.seen_tasks[-1]
    if task_id not in tasks.task_ids:
        raise UserInputError(f"--slot_task {task_id}: {path} has tasks {tasks.task_ids}")
    task = tasks[task_id]
    indices = mode.slot_images
    if indices is None and mode.compose_slots:
        indices = sorted({i for i, _ in parse_compose_spec(mode.compose_slots)})
    indices = indices or list(range(min(DEFAULT_SLOT_IMAGES, len(task))))
    bad = [i for i in indices if not 0 <= i < len(task)]
    if bad:
        raise UserInputError(f"--slot_images {bad} out of range: task {task_id} has {len(task)} images")
    transform = ImageTransform(spec.resolution, center_crop=True)
    images = transform(transform.prepare(task.images[indices]))
    masks = None
    if os.path.isfile(masks_path(path)) and task.images.shape[1] == spec.resolution:
        masks = load_masks(masks_path(path), tasks)[task_id][indices]
    return images, masks, indices


def _concat_conditions(picks, slots: torch.Tensor, attention: torch.Tensor, images: torch.Tensor, indices: list[int]):
    """One slot set (K', D) from the picks. Fewer than K chosen slots are padded with the first image's unused slots
    (least attention mass first), so the UNet sees the K tokens it was trained with and guidance can batch the null
    set. images (N, C, H, W): the sources, which tell object pixels from the canvas."""
    from .slots import background_slot, compose_slot_set, object_slots

    resolved = []
    for n, (image, ids) in enumerate(picks):
        row = indices.index(image)
        if ids is None:
            ids = object_slots(attention[row], images[row])
            if n == 0:
                ids = [background_slot(attention[row], images[row]), *ids]
        resolved.append((row, ids))
    num_slots, chosen = slots.shape[1], sum(len(ids) for _, ids in resolved)
    first, used = resolved[0][0], set(resolved[0][1])
    spare = [k for k in attention[first].flatten(1).sum(1).argsort().tolist() if k not in used]
    if chosen < num_slots:
        resolved.append((first, spare[: num_slots - chosen]))
    return compose_slot_set(slots, resolved)


def run_slot_mode(mode: SlotModeConfig, g, model, conditioning, scheduler, spec, options, device, out: str):
    """Run one --slot_mode (`mode`; `g`: the sampling request, `config.generation.SampleRequest`; `spec`: the model's
    `ModelSpec`) and write its sheets and run.json to `out` (created, or checked writable, only once the inputs are
    validated); returns the run record."""
    import dataclasses

    from ..sampling.generate import CompositionOptions, generate
    from ..utils.files import check_writable
    from ..utils.images import make_grid, save_grid
    from .slots import attention_sheet, encode_slots, fg_ari

    if not isinstance(conditioning, SlotConditioning):
        raise UserInputError(f"--slot_mode needs a slot-conditioned model; this one is {spec.conditioning!r}")
    images, masks, indices = _source_images(mode, spec)
    slots, attention = encode_slots(conditioning, images.to(device))
    record: dict = {"mode": mode.slot_mode, "source_task_images": indices}
    n = g.sampling.num_samples
    if mode.slot_mode == "masks":
        check_writable(out)
        save_sheet(attention_sheet(images, attention), os.path.join(out, "slot_masks.png"))
        if masks is not None:
            scores = fg_ari(masks, attention.numpy())
            record["fg_ari"] = float(np.nanmean(scores))
            record["fg_ari_per_image"] = [None if np.isnan(s) else float(s) for s in scores]
        return record
    if mode.slot_mode == "reconstruct":
        labels = [s for s in slots for _ in range(n)]
        samples = generate(model, conditioning, scheduler, labels, options, device).images().cpu()
        mse = (samples - images.repeat_interleave(n, 0)).pow(2).flatten(1).mean(1).view(len(images), n)
        check_writable(out)
        record.update(mse=float(mse.mean()), mse_per_image=mse.mean(1).tolist())
        rows = torch.cat([torch.cat([images[i : i + 1], samples[i * n : (i + 1) * n]]) for i in range(len(images))])
        save_grid(rows, os.path.join(out, "reconstructions.png"), nrow=n + 1)
        np.savez(os.path.join(out, "reconstructions.npz"), images=make_grid(rows, nrow=n + 1))
        return record
    if not mode.compose_slots:
        raise UserInputError('--slot_mode compose needs --compose_slots, e.g. "0 1" or "0:0,2 1:3"')
    picks = parse_compose_spec(mode.compose_slots)
    if mode.slot_composition == "concat":
        condition = _concat_conditions(picks, slots, attention, images, indices)
        record["num_slots_composed"] = int(condition.shape[0])
        if condition.shape[0] != slots.shape[1] and options.guidance_scale != 1.0 and conditioning.supports_null:
            raise UserInputError(
                f"{condition.shape[0]} composed slots but the null set has {slots.shape[1]}: guidance evaluates both "
                "in one batch, so compose at most K slots or pass --guidance_scale 1"
            )
        samples = generate(model, conditioning, scheduler, [condition] * n, options, device).images().cpu()
    else:
        if any(ids is not None for _, ids in picks):
            raise UserInputError("--slot_composition product composes whole slot sets: give image indices only")
        if not conditioning.supports_null:
            raise UserInputError("--slot_composition product needs a model trained with --classifier_free_guidance")
        concepts = tuple(slots[indices.index(i)] for i, _ in picks)
        weights = tuple(composition_weights(g.composition, len(concepts), options.guidance_scale, "images"))
        comp = CompositionOptions(concepts, weights, "product")
        record["weights"] = list(weights)
        labels = [concepts[0]] * n  # replaced by the composition inside generate
        samples = generate(
            model, conditioning, scheduler, labels, dataclasses.replace(options, composition=comp), device
        )
        samples = samples.images().cpu()
    sources = [images[indices.index(i)] for i, _ in picks]
    pad = max(0, n - len(sources))
    top = torch.stack(sources + [torch.full_like(images[0], -1.0)] * pad)
    check_writable(out)
    save_grid(torch.cat([top, samples]), os.path.join(out, "composition.png"), nrow=max(n, len(sources)))
    record["compose_slots"] = list(mode.compose_slots)
    return record


def save_sheet(sheet: np.ndarray, path: str, min_size: int = 512) -> str:
    """Save a uint8 (H, W, 3) sheet as PNG, upscaled (nearest) to at least `min_size` px wide."""
    from PIL import Image

    scale = max(1, -(-min_size // sheet.shape[1]))
    Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST).save(path)
    return path


def write_record(out: str, record: dict, options) -> None:
    record.update(scheduler=options.scheduler, num_inference_steps=options.num_inference_steps)
    record["mcmc"] = None if options.mcmc is None else options.mcmc.sampler
    with open(os.path.join(out, "run.json"), "w") as fh:
        json.dump(record, fh, indent=2)
    logger.info("slot %s: %s", record["mode"], {k: v for k, v in record.items() if not isinstance(v, list)})
