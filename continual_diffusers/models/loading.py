"""Load an exported task model (output_dir/task_{k}/, written by training) back into a denoiser + conditioning
(+ the VAE decoder of latent models). Slot-conditioned models also have `slot_encoder/` [`slot_encoder_ema/`]."""

from __future__ import annotations

import json
import os

from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel

from ..utils.errors import UserInputError
from .conditioning import ClassConditioning, SlotConditioning, TextConditioning, Unconditional, load_text_encoder
from .denoiser import make_denoiser
from .slots import SlotEncoder

METADATA_FILE = "continual_diffusers.json"


def read_metadata(task_dir: str) -> dict:
    path = os.path.join(task_dir, METADATA_FILE)
    if not os.path.isfile(path):
        raise UserInputError(f"{task_dir}: not an exported task model (no {METADATA_FILE}); pass output_dir/task_<k>")
    try:
        with open(path) as fh:
            meta = json.load(fh)
    except (OSError, ValueError) as err:
        raise UserInputError(f"{path} is not valid JSON ({err}); re-export the model or restore the file") from err
    if not isinstance(meta, dict) or "conditioning" not in meta:
        raise UserInputError(f"{path} is not a task model's metadata (no 'conditioning' key)")
    return meta


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
    if meta.get("in_channels") not in (None, unet.config.in_channels) and not meta.get("latent"):
        raise UserInputError(
            f"{task_dir}: the UNet takes {unet.config.in_channels} channels but its metadata says "
            f"{meta['in_channels']}"
        )


def load_task_model(task_dir: str, use_ema: bool | None = None, device="cpu"):
    """(denoiser in eval mode, conditioning, training noise scheduler, metadata) from `task_dir`.

    `use_ema=None` picks `unet_ema/` when it exists, `True` requires it, `False` uses the training weights.
    """
    meta = read_metadata(task_dir)
    has_ema = os.path.isdir(os.path.join(task_dir, "unet_ema"))
    if use_ema and not has_ema:
        raise UserInputError(f"{task_dir}: --use_ema asked for, but the model was trained without EMA")
    sub = "unet_ema" if (has_ema if use_ema is None else use_ema) else "unet"
    cls = UNet2DConditionModel if meta["conditioning"] in ("text", "slots") else UNet2DModel
    try:
        unet = cls.from_pretrained(task_dir, subfolder=sub)
    except (OSError, ValueError) as err:
        raise UserInputError(f"{task_dir}/{sub}: cannot load the UNet ({err})".splitlines()[0]) from err
    check_unet_matches(meta, unet, task_dir)
    # The EMA UNet was averaged together with its slot encoder: load the matching pair.
    slot_encoder = (
        _slot_encoder(task_dir, sub.replace("unet", "slot_encoder")) if meta["conditioning"] == "slots" else None
    )
    denoiser = make_denoiser(unet, meta.get("energy_type"), slot_encoder).to(device).eval().requires_grad_(False)
    conditioning = _conditioning(meta, task_dir, denoiser)
    if meta["conditioning"] == "text":
        conditioning.text_encoder.to(device)
    scheduler = DDPMScheduler.from_pretrained(task_dir, subfolder="scheduler")
    return denoiser, conditioning, scheduler, meta


def _slot_encoder(task_dir: str, sub: str) -> SlotEncoder:
    try:
        return SlotEncoder.from_pretrained(task_dir, subfolder=sub)
    except (OSError, ValueError) as err:
        raise UserInputError(f"{task_dir}/{sub}: cannot load the slot encoder ({err})".splitlines()[0]) from err


def _conditioning(meta: dict, task_dir: str, denoiser):
    if meta["conditioning"] == "slots":
        return SlotConditioning(denoiser.slot_encoder)
    if meta["conditioning"] == "class":
        return ClassConditioning(meta["num_classes"], null_class=meta["null_class_index"] is not None)
    if meta["conditioning"] == "text":
        tokenizer, encoder = load_text_encoder(task_dir)
        return TextConditioning(tokenizer, encoder)
    return Unconditional()


def load_decode_fn(task_dir: str, meta: dict, device="cpu"):
    """Latent models: the exported VAE's decoder, latents (B, c, h, w) → images (B, 3, H, W) in [-1, 1];
    None for pixel-space models."""
    if not meta.get("latent"):
        return None
    from diffusers import AutoencoderKL

    from .latent import LatentCodec

    try:
        vae = AutoencoderKL.from_pretrained(task_dir, subfolder="vae")
    except (OSError, ValueError) as err:
        raise UserInputError(
            f"{task_dir}/vae: cannot load the VAE of this latent model ({err})".splitlines()[0]
        ) from err
    return LatentCodec(vae.to(device)).decode
