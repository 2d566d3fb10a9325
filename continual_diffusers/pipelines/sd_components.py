"""The frozen components of a Stable-Diffusion checkpoint that main_ldm.py trains on (Rombach et al. 2022):
`load_sd_components` loads the VAE, tokenizer, text encoder, scheduler and UNet from a hub id or a local folder in
the diffusers Stable-Diffusion layout (vae/, text_encoder/, tokenizer/, scheduler/, unet/), each checked as
untrusted input, and checks them together (`check_components`). Moving images to and from the latent space is
`models.latent`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from torch import nn

from ..models.components import check_local_config, load_model, remote_config
from ..models.conditioning import load_text_encoder
from ..models.config_check import UNET_SIZES, VAE_SIZES, check_model_config
from ..sampling.schedule_check import check_schedule_config
from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json_object
from ..utils.logging import quiet_libraries

SD_SUBFOLDERS = ("vae", "text_encoder", "tokenizer", "scheduler", "unet")


@dataclass
class LatentComponents:
    """The pieces of a Stable-Diffusion checkpoint we use; VAE and text encoder frozen, in eval mode."""

    vae: nn.Module
    tokenizer: object
    text_encoder: nn.Module
    scheduler: object  # DDPMScheduler with the repo's noise schedule and the chosen prediction type
    unet: nn.Module  # UNet2DConditionModel: pretrained weights, or randomly initialised with unet_scratch


def _check_layout(path: str, need_unet: bool) -> None:
    if not os.path.isdir(path):
        return  # a hub id: from_pretrained resolves (or fails with a message we rephrase)
    wanted = [s for s in SD_SUBFOLDERS if s != "unet" or need_unet]
    missing = [s for s in wanted if not os.path.isdir(os.path.join(path, s))]
    if missing:
        raise UserInputError(
            f"--pretrained_model_name_or_path {path}: missing subfolder(s) {', '.join(s + '/' for s in missing)} "
            f"(expected the diffusers Stable-Diffusion layout: {', '.join(s + '/' for s in SD_SUBFOLDERS)})"
        )


def _unet_config(path: str, config_path: str | None, revision: str | None) -> dict:
    """The config of a UNet trained from scratch: the repo's unet/config.json, or `config_path` (a file or a folder
    with config.json); checked on an empty skeleton before it is built."""
    from diffusers import UNet2DConditionModel

    if config_path is None:
        if os.path.isdir(path):
            config, where = check_local_config(os.path.join(path, "unet")), os.path.join(path, "unet", "config.json")
        else:
            config, where = remote_config(UNet2DConditionModel, path, "unet", revision, "the UNet"), f"{path}/unet"
    else:
        where = os.path.join(config_path, "config.json") if os.path.isdir(config_path) else config_path
        try:
            config = read_json_object(where)
        except UserInputError as err:
            raise UserInputError(f"--model_config_name_or_path {err}") from None
        where = f"--model_config_name_or_path {where}"
    check_model_config(UNet2DConditionModel, config, where, UNET_SIZES)
    return config


def _scheduler_config(path: str, revision: str | None, overrides: dict) -> dict:
    """The repo's scheduler config with `overrides` applied, checked (sampling/schedule_check.py)."""
    from diffusers import DDPMScheduler

    if os.path.isdir(path):
        config = check_local_config(os.path.join(path, "scheduler"), "scheduler_config.json")
    else:
        config = remote_config(DDPMScheduler, path, "scheduler", revision, "the scheduler")
    where = os.path.join(path, "scheduler", "scheduler_config.json")
    check_schedule_config({k: v for k, v in config.items() if k not in overrides}, where)
    config = {**config, **overrides}
    check_schedule_config(config, f"{where} with {', '.join(f'{k}={v}' for k, v in overrides.items())}")
    return config


def load_sd_components(
    path: str,
    revision: str | None = None,
    variant: str | None = None,
    prediction_type: str | None = None,
    unet_scratch: bool = False,
    unet_config_path: str | None = None,
    rescale_betas_zero_snr: bool = False,
) -> LatentComponents:
    """Load and cross-check the SD components of `path` (hub id or local dir), each checked as untrusted input
    (models/components.py: bounded configs on empty skeletons, safetensors weights that fit them; the scheduler
    config against what every sampler accepts).

    Args:
        prediction_type: "epsilon" | "v_prediction" overrides the scheduler config's; None keeps it.
        unet_scratch: random-init UNet from the repo's unet config, or from `unet_config_path` (e.g. a smaller one).
        rescale_betas_zero_snr: rescale the repo's betas to ᾱ_T = 0 (Lin et al. 2024); needs v-prediction.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    if unet_config_path and not unet_scratch:
        raise UserInputError("--model_config_name_or_path needs --unet_scratch (it defines a new, random UNet)")
    _check_layout(path, need_unet=not (unet_scratch and unet_config_path))
    overrides = {"prediction_type": prediction_type} if prediction_type else {}
    if rescale_betas_zero_snr:  # Lin et al. 2024: ᾱ_T = 0 (fine-tuning SD 2.x with v-prediction)
        overrides["rescale_betas_zero_snr"] = True
    with quiet_libraries():
        scheduler = DDPMScheduler.from_config(_scheduler_config(path, revision, overrides))
    tokenizer, text_encoder = load_text_encoder(path, revision, variant)
    vae = load_model(AutoencoderKL, path, "vae", "the VAE", VAE_SIZES, variant, revision)
    if unet_scratch:
        config = _unet_config(path, unet_config_path, revision)
        with quiet_libraries():
            unet = UNet2DConditionModel.from_config(config)
    else:
        unet = load_model(UNet2DConditionModel, path, "unet", "the UNet", UNET_SIZES, variant, revision)
    vae.requires_grad_(False).eval()
    text_encoder.requires_grad_(False).eval()
    components = LatentComponents(vae, tokenizer, text_encoder, scheduler, unet)
    check_components(components)
    return components


def check_components(c: LatentComponents) -> None:
    """One clear message per incompatibility between the text encoder, VAE and UNet (the tokenizer's with the text
    encoder: `models.conditioning.load_text_encoder`)."""
    te = c.text_encoder.config
    if c.unet.config.cross_attention_dim != te.hidden_size:
        raise UserInputError(
            f"UNet cross_attention_dim={c.unet.config.cross_attention_dim} but the text encoder's hidden size is "
            f"{te.hidden_size}"
        )
    if c.unet.config.in_channels != c.vae.config.latent_channels:
        raise UserInputError(
            f"UNet in_channels={c.unet.config.in_channels} but the VAE has {c.vae.config.latent_channels} latent "
            "channels"
        )
