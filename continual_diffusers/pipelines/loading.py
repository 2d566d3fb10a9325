"""Load an exported task model (output_dir/task_{k}/, written by training) back into a denoiser + conditioning
(+ the VAE decoder of latent models), with its `ModelSpec` (`continual_diffusers.json`).

Weights (`weight_folders`), as diffusers' training examples export them: `unet/` holds the inference weights (the
EMA average when trained with `--use_ema`, metadata `"ema": true`) and `unet_training/` the training weights next
to it; without EMA `unet/` holds the training weights. Older exports (`unet/` = training, `unet_ema/` = EMA) still
load. A conditioning kind keeps its own modules next to the UNet (`Conditioning.load_modules`: slot models'
`slot_encoder/` paired with the UNet folder, text models' `text_encoder/` and `tokenizer/`).

An export folder is input: its files are checked before anything is built from them (models/components.py: regular
files, bounded JSON, configs on an empty skeleton that the safetensors headers must match; the schedule against
what every sampler accepts, sampling/schedule_check.py; the UNet and schedule consistent with the spec), and its
weights must be finite, so an edited or mixed-up folder is refused with one line instead of a traceback, a hang, a
huge allocation or black samples.
"""

from __future__ import annotations

import os

import torch
from diffusers import DDPMScheduler

from ..models.components import load_model
from ..models.conditioning import Conditioning, check_unet_takes
from ..models.config_check import UNET_SIZES, VAE_SIZES
from ..models.denoiser import make_denoiser
from ..models.spec import METADATA_FILE, ModelSpec
from ..models.unet import check_unet_fits, unet_class
from ..models.weights import check_component_files
from ..sampling.schedule_check import check_schedule_config
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json_object
from ..utils.logging import quiet_libraries


def read_spec(task_dir: str) -> ModelSpec:
    """The `ModelSpec` of an export folder, checked (`ModelSpec.from_json`)."""
    path = os.path.join(task_dir, METADATA_FILE)
    if not os.path.lexists(path):
        raise UserInputError(f"{task_dir}: not an exported task model (no {METADATA_FILE}); pass output_dir/task_<k>")
    return ModelSpec.from_json(read_json_object(path), path)


def check_unet_matches(spec: ModelSpec, conditioning: Conditioning, unet, task_dir: str) -> None:
    """The exported UNet must be the one its spec describes (a UNet copied in from another run is refused here
    instead of failing with an index error in the middle of sampling)."""
    check_unet_takes(conditioning, unet.config, f"{task_dir}: the UNet", "; the folder mixes files of different runs")
    if spec.latent is None and spec.in_channels != unet.config.in_channels:
        raise UserInputError(
            f"{task_dir}: the UNet takes {unet.config.in_channels} channels but its metadata says {spec.in_channels}"
        )


def weight_folders(task_dir: str, spec: ModelSpec) -> dict[str, str | None]:
    """{"ema": folder of the EMA UNet or None, "training": folder of the training UNet or None} of an export:
    `unet/` + `unet_training/` (EMA runs) or `unet/` alone; older exports `unet/` (training) + `unet_ema/`."""
    if os.path.isdir(os.path.join(task_dir, "unet_ema")):
        return {"ema": "unet_ema", "training": "unet"}
    if spec.ema:
        return {
            "ema": "unet",
            "training": "unet_training" if os.path.isdir(os.path.join(task_dir, "unet_training")) else None,
        }
    return {"ema": None, "training": "unet"}


def load_task_model(task_dir: str, use_ema: bool | None = None, device="cpu"):
    """(denoiser in eval mode, conditioning, training noise scheduler, `ModelSpec`) from `task_dir`.

    `use_ema=None` picks the EMA weights when the model was trained with EMA, `True` requires them, `False` uses
    the training weights (`weight_folders`).
    """
    spec = read_spec(task_dir)
    folders = weight_folders(task_dir, spec)
    if use_ema and folders["ema"] is None:
        raise UserInputError(f"{task_dir}: --use_ema asked for, but the model was trained without EMA")
    if use_ema is False and folders["training"] is None:
        raise UserInputError(
            f"{task_dir}: the training (non-EMA) weights are not in this export (no unet_training/); unet/ holds the "
            "EMA weights, the training weights are in the run's checkpoints"
        )
    sub = folders["ema"] if (use_ema is None and folders["ema"]) or use_ema else folders["training"]
    scheduler = load_schedule(task_dir, spec)
    unet = _load_unet(task_dir, sub, spec)
    # The kind's own modules (a slot encoder averaged together with this UNet, a text encoder) and the condition.
    conditioning = spec.kind.from_spec(spec, spec.kind.load_modules(task_dir, sub))
    check_unet_matches(spec, conditioning, unet, task_dir)
    denoiser = make_denoiser(unet, spec.energy_type, conditioning.trained_module)
    denoiser = denoiser.to(device).eval().requires_grad_(False)
    return denoiser, conditioning.to(device), scheduler, spec


def _load_unet(task_dir: str, sub: str, spec: ModelSpec):
    cls = unet_class(spec.kind)

    def fits(config: dict, where: str) -> None:
        if spec.latent is not None:  # the UNet works on VAE latents; their channels come from the VAE
            if config.get("sample_size") != spec.resolution // spec.latent.downsample:
                raise UserInputError(
                    f"{where}: sample_size={b.shown(config.get('sample_size'))} does not fit the metadata"
                )
        else:
            check_unet_fits(cls, config, where, spec.resolution, spec.in_channels)

    return load_model(cls, task_dir, sub, "the UNet", UNET_SIZES, fits=fits)


def load_schedule(task_dir: str, spec: ModelSpec) -> DDPMScheduler:
    """The training noise schedule of an export (scheduler/), checked: its config against what DDPM and every
    sampler accept (sampling/schedule_check.py), the spec's prediction type, every β_t in (0, 1)."""
    folder = os.path.join(task_dir, "scheduler")
    file = os.path.join(folder, "scheduler_config.json")
    if not os.path.lexists(file):
        raise UserInputError(f"{task_dir}: no scheduler/scheduler_config.json (an incomplete export)")
    check_component_files(folder)
    config = read_json_object(file)
    check_schedule_config(config, file)
    if config.get("prediction_type", "epsilon") != spec.prediction_type:
        raise UserInputError(
            f"{file}: prediction_type {b.shown(config.get('prediction_type'))} but the metadata says "
            f"{b.shown(spec.prediction_type)}; the folder mixes files of different runs"
        )
    with quiet_libraries():
        scheduler = DDPMScheduler.from_config(config)
    betas = scheduler.betas
    if not bool(torch.isfinite(betas).all() and (betas > 0).all() and (betas[:-1] < 1).all() and betas[-1] <= 1):
        raise UserInputError(f"{file}: the noise schedule's betas must lie in (0, 1) (or β_T = 1: zero terminal SNR)")
    if float(betas[-1]) == 1.0 and config.get("prediction_type", "epsilon") == "epsilon":
        raise UserInputError(f"{file}: a zero-terminal-SNR schedule (β_T = 1) with ε-prediction cannot be sampled")
    return scheduler


def load_vae(task_dir: str, spec: ModelSpec, device="cpu"):
    """Latent models: the exported VAE (`AutoencoderKL`); None for pixel-space models."""
    if spec.latent is None:
        return None
    from diffusers import AutoencoderKL

    vae = load_model(AutoencoderKL, task_dir, "vae", "the VAE of this latent model", VAE_SIZES)
    return vae.to(device)


def load_decode_fn(task_dir: str, spec: ModelSpec, device="cpu"):
    """Latent models: the exported VAE's decoder, latents (B, c, h, w) → images (B, 3, H, W) in [-1, 1];
    None for pixel-space models."""
    from ..models.latent import LatentCodec

    vae = load_vae(task_dir, spec, device)
    return None if vae is None else LatentCodec(vae).decode


def local_path(name: str, subfolder: str | None, hub_kwargs: dict) -> str:
    """A local folder as is; a Hub repo id downloaded (only `subfolder` of it when given)."""
    if os.path.isdir(name) or not is_repo_id(name):
        return os.path.join(name, subfolder) if subfolder else name
    from huggingface_hub import snapshot_download

    try:
        root = snapshot_download(name, allow_patterns=[f"{subfolder}/*"] if subfolder else None, **hub_kwargs)
    except Exception as err:  # offline, unknown repo, no access: one line instead of a traceback
        message = f"{name}: not a local folder, and not downloadable from the Hub ({err})"
        raise UserInputError(message.splitlines()[0]) from err
    return os.path.join(root, subfolder) if subfolder else root


def is_repo_id(name: str) -> bool:
    """`user/name` by huggingface_hub's own rules (anything else is a local path)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return "/" in name
