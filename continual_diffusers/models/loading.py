"""Load an exported task model (output_dir/task_{k}/, written by training) back into a denoiser + conditioning
(+ the VAE decoder of latent models).

Weights (`weight_folders`), as diffusers' training examples export them: `unet/` holds the inference weights (the
EMA average when trained with `--use_ema`, metadata `"ema": true`) and `unet_training/` the training weights next
to it; without EMA `unet/` holds the training weights. Older exports (`unet/` = training, `unet_ema/` = EMA) still
load. Slot-conditioned models have `slot_encoder/` [`slot_encoder_training/` or, older, `slot_encoder_ema/`] paired
with the UNet folder.

An export folder is input: its files are checked before anything is built from them (models/components.py: regular
files, bounded JSON, configs on an empty skeleton that the safetensors headers must match; the schedule against
what every sampler accepts, sampling/schedule_check.py; the UNet and schedule consistent with the metadata), and
its weights must be finite, so an edited or mixed-up folder is refused with one line instead of a traceback, a
hang, a huge allocation or black samples.
"""

from __future__ import annotations

import os

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel

from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json_object
from ..utils.logging import quiet_libraries
from .components import load_model
from .conditioning import ClassConditioning, SlotConditioning, TextConditioning, Unconditional, load_text_encoder
from .config_check import UNET_SIZES, VAE_SIZES
from .denoiser import make_denoiser
from .slots import SlotEncoder
from .unet import check_unet_fits
from .weights import check_component_files

METADATA_FILE = "continual_diffusers.json"
CONDITIONINGS = ("none", "class", "text", "slots")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
# What every export's metadata holds (training/build.py `export_metadata` + the task's position), and what
# sampling and the report read without a default.
REQUIRED_METADATA = ("conditioning", "resolution", "in_channels", "classes_per_task", "seen_tasks")
SLOT_ENCODER_SIZES = {
    "in_channels": b.CHANNELS,
    "resolution": b.RESOLUTION,
    "num_slots": b.NUM_SLOTS,
    "slot_dim": b.CHANNELS,
    "num_iterations": b.SLOT_ITERATIONS,
    "hidden_channels": b.CHANNELS,
    "num_conv_layers": b.LAYERS_PER_BLOCK,
    "kernel_size": b.Bounds(int, 1, 15),
}


def read_metadata(task_dir: str) -> dict:
    path = os.path.join(task_dir, METADATA_FILE)
    if not os.path.lexists(path):
        raise UserInputError(f"{task_dir}: not an exported task model (no {METADATA_FILE}); pass output_dir/task_<k>")
    meta = read_json_object(path)
    missing = [key for key in REQUIRED_METADATA if key not in meta]
    if missing:
        raise UserInputError(f"{path} is not a task model's metadata (no {missing[0]!r} key)")
    check_metadata(meta, path)
    return meta


def check_metadata(meta: dict, path: str) -> None:
    """The fields sampling and evaluation read, with their types and bounds."""

    def refuse(what: str) -> UserInputError:
        return UserInputError(f"{path}: {what}; re-export the model or restore the file")

    if meta["conditioning"] not in CONDITIONINGS:
        raise refuse(f"conditioning must be one of {list(CONDITIONINGS)}, got {b.shown(meta['conditioning'])}")
    kind, num_classes = meta["conditioning"], meta.get("num_classes", 0)
    (b.NUM_CLASSES if kind == "class" else b.Bounds(int, 0, 0)).check(f"{path}: num_classes", num_classes)
    null_index = meta.get("null_class_index")
    if null_index is not None and (kind != "class" or isinstance(null_index, bool) or null_index != num_classes):
        raise refuse(
            f"null_class_index must be null or num_classes ({num_classes}), got {b.shown(meta['null_class_index'])}"
        )
    if meta.get("energy_type") not in (None, "l2", "dae"):
        raise refuse(f"energy_type must be null, 'l2' or 'dae', got {b.shown(meta['energy_type'])}")
    if meta.get("prediction_type", "epsilon") not in PREDICTION_TYPES:
        raise refuse(
            f"prediction_type must be one of {list(PREDICTION_TYPES)}, got {b.shown(meta['prediction_type'])}"
        )
    for key in ("classifier_free_guidance", "ema"):
        if not isinstance(meta.get(key, False), bool):
            raise refuse(f"{key} must be true or false")
    b.RESOLUTION.check(f"{path}: resolution", meta.get("resolution"))
    b.CHANNELS.check(f"{path}: in_channels", meta.get("in_channels"))
    per_task, seen = meta.get("classes_per_task", {}), meta.get("seen_tasks", [])
    if not isinstance(per_task, dict) or not all(
        isinstance(v, list) and all(b.Bounds(int, 0, max(num_classes - 1, 0)).contains(c) for c in v)
        for v in per_task.values()
    ):
        raise refuse(f"classes_per_task must map task ids to lists of class ids in [0, {num_classes})")
    if not isinstance(seen, list) or not seen or not all(isinstance(t, int) and str(t) in per_task for t in seen):
        raise refuse("seen_tasks must list task ids of classes_per_task (an export follows at least one task)")
    prompts = meta.get("validation_prompts", [])
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise refuse("validation_prompts must be a list of strings")
    if meta.get("latent") is not None:
        latent = meta["latent"]
        if not isinstance(latent, dict) or not b.Bounds(int, 1, 64).contains(latent.get("downsample")):
            raise refuse("latent.downsample must be an integer in [1, 64]")


def check_unet_matches(meta: dict, unet, task_dir: str) -> None:
    """The exported UNet must be the one its metadata describes (a UNet copied in from another run is refused
    here instead of failing with an index error in the middle of sampling)."""
    if meta["conditioning"] == "class":
        want = meta["num_classes"] + int(meta.get("null_class_index") is not None)
        have = unet.config.num_class_embeds
        if have != want:
            raise UserInputError(
                f"{task_dir}: the UNet has {have} class embeddings but its metadata says {meta['num_classes']} "
                f"classes{' + the CFG null class' if meta.get('null_class_index') is not None else ''}; the folder "
                "mixes files of different runs"
            )
    elif getattr(unet.config, "num_class_embeds", None) is not None:
        raise UserInputError(
            f"{task_dir}: the UNet has class embeddings but its metadata says {b.shown(meta['conditioning'])} "
            "conditioning"
        )
    if meta.get("in_channels") not in (None, unet.config.in_channels) and not meta.get("latent"):
        raise UserInputError(
            f"{task_dir}: the UNet takes {unet.config.in_channels} channels but its metadata says "
            f"{meta['in_channels']}"
        )


def weight_folders(task_dir: str, meta: dict) -> dict[str, str | None]:
    """{"ema": folder of the EMA UNet or None, "training": folder of the training UNet or None} of an export:
    `unet/` + `unet_training/` (EMA runs) or `unet/` alone; older exports `unet/` (training) + `unet_ema/`."""
    if os.path.isdir(os.path.join(task_dir, "unet_ema")):
        return {"ema": "unet_ema", "training": "unet"}
    if meta.get("ema"):
        return {
            "ema": "unet",
            "training": "unet_training" if os.path.isdir(os.path.join(task_dir, "unet_training")) else None,
        }
    return {"ema": None, "training": "unet"}


def load_task_model(task_dir: str, use_ema: bool | None = None, device="cpu"):
    """(denoiser in eval mode, conditioning, training noise scheduler, metadata) from `task_dir`.

    `use_ema=None` picks the EMA weights when the model was trained with EMA, `True` requires them, `False` uses
    the training weights (`weight_folders`).
    """
    meta = read_metadata(task_dir)
    folders = weight_folders(task_dir, meta)
    if use_ema and folders["ema"] is None:
        raise UserInputError(f"{task_dir}: --use_ema asked for, but the model was trained without EMA")
    if use_ema is False and folders["training"] is None:
        raise UserInputError(
            f"{task_dir}: the training (non-EMA) weights are not in this export (no unet_training/); unet/ holds the "
            "EMA weights, the training weights are in the run's checkpoints"
        )
    sub = folders["ema"] if (use_ema is None and folders["ema"]) or use_ema else folders["training"]
    scheduler = load_schedule(task_dir, meta)
    unet = _load_unet(task_dir, sub, meta)
    check_unet_matches(meta, unet, task_dir)
    # The EMA UNet was averaged together with its slot encoder: load the matching pair.
    slot_encoder = (
        _slot_encoder(task_dir, sub.replace("unet", "slot_encoder")) if meta["conditioning"] == "slots" else None
    )
    denoiser = make_denoiser(unet, meta.get("energy_type"), slot_encoder).to(device).eval().requires_grad_(False)
    conditioning = _conditioning(meta, task_dir, denoiser)
    if meta["conditioning"] == "text":
        conditioning.text_encoder.to(device)
        if unet.config.cross_attention_dim != conditioning.hidden_size:
            raise UserInputError(
                f"{task_dir}: the UNet attends to {unet.config.cross_attention_dim}-wide states but the text encoder "
                f"is {conditioning.hidden_size} wide; the folder mixes files of different runs"
            )
    return denoiser, conditioning, scheduler, meta


def _load_unet(task_dir: str, sub: str, meta: dict):
    cls = UNet2DConditionModel if meta["conditioning"] in ("text", "slots") else UNet2DModel
    latent = meta.get("latent")

    def fits(config: dict, where: str) -> None:
        if latent:  # the UNet works on VAE latents; their channels come from the VAE
            if config.get("sample_size") != meta["resolution"] // latent["downsample"]:
                raise UserInputError(
                    f"{where}: sample_size={b.shown(config.get('sample_size'))} does not fit the metadata"
                )
        else:
            check_unet_fits(cls, config, where, meta["resolution"], meta["in_channels"])

    return load_model(cls, task_dir, sub, "the UNet", UNET_SIZES, fits=fits)


def load_schedule(task_dir: str, meta: dict) -> DDPMScheduler:
    """The training noise schedule of an export (scheduler/), checked: its config against what DDPM and every
    sampler accept (sampling/schedule_check.py), the metadata's prediction type, every β_t in (0, 1)."""
    from ..sampling.schedule_check import check_schedule_config

    folder = os.path.join(task_dir, "scheduler")
    file = os.path.join(folder, "scheduler_config.json")
    if not os.path.lexists(file):
        raise UserInputError(f"{task_dir}: no scheduler/scheduler_config.json (an incomplete export)")
    check_component_files(folder)
    config = read_json_object(file)
    check_schedule_config(config, file)
    if config.get("prediction_type", "epsilon") != meta.get("prediction_type", "epsilon"):
        raise UserInputError(
            f"{file}: prediction_type {b.shown(config.get('prediction_type'))} but the metadata says "
            f"{b.shown(meta.get('prediction_type'))}; the folder mixes files of different runs"
        )
    with quiet_libraries():
        scheduler = DDPMScheduler.from_config(config)
    betas = scheduler.betas
    if not bool(torch.isfinite(betas).all() and (betas > 0).all() and (betas[:-1] < 1).all() and betas[-1] <= 1):
        raise UserInputError(f"{file}: the noise schedule's betas must lie in (0, 1) (or β_T = 1: zero terminal SNR)")
    if float(betas[-1]) == 1.0 and config.get("prediction_type", "epsilon") == "epsilon":
        raise UserInputError(f"{file}: a zero-terminal-SNR schedule (β_T = 1) with ε-prediction cannot be sampled")
    return scheduler


def _slot_encoder(task_dir: str, sub: str) -> SlotEncoder:
    return load_model(SlotEncoder, task_dir, sub, "the slot encoder", SLOT_ENCODER_SIZES)


def _conditioning(meta: dict, task_dir: str, denoiser):
    if meta["conditioning"] == "slots":
        return SlotConditioning(denoiser.slot_encoder)
    if meta["conditioning"] == "class":
        return ClassConditioning(meta["num_classes"], null_class=meta["null_class_index"] is not None)
    if meta["conditioning"] == "text":
        tokenizer, encoder = load_text_encoder(task_dir)
        return TextConditioning(tokenizer, encoder)
    return Unconditional()


def load_vae(task_dir: str, meta: dict, device="cpu"):
    """Latent models: the exported VAE (`AutoencoderKL`); None for pixel-space models."""
    if not meta.get("latent"):
        return None
    from diffusers import AutoencoderKL

    vae = load_model(AutoencoderKL, task_dir, "vae", "the VAE of this latent model", VAE_SIZES)
    return vae.to(device)


def load_decode_fn(task_dir: str, meta: dict, device="cpu"):
    """Latent models: the exported VAE's decoder, latents (B, c, h, w) → images (B, 3, H, W) in [-1, 1];
    None for pixel-space models."""
    from .latent import LatentCodec

    vae = load_vae(task_dir, meta, device)
    return None if vae is None else LatentCodec(vae).decode
