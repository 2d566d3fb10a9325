"""A tiny, offline Stable-Diffusion-layout pipeline (vae/, text_encoder/, tokenizer/, unet/, scheduler/,
model_index.json) written to a local folder, so the LDM path loads through the real `from_pretrained` code."""

from __future__ import annotations

import os

import pytest


def write_tiny_sd(
    root: str,
    vae_channels: tuple[int, ...] = (4, 8),
    unet_channels: tuple[int, ...] = (8, 16),
    latent_size: int = 4,
    text_hidden_size: int = 16,
) -> str:
    """Write a StableDiffusionPipeline to `root` (a VAE with 2**(len(vae_channels)-1) downsampling, the tiny CLIP of
    tiny_clip.py, a UNet2DConditionModel and an SD-v1-like DDPM schedule); returns `root`."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from tiny_clip import write_tiny_clip
    from transformers import CLIPTextModel, CLIPTokenizer

    clip_dir = write_tiny_clip(root.rstrip("/") + "_clip", hidden_size=text_hidden_size)
    torch.manual_seed(0)
    n = len(vae_channels)
    vae = AutoencoderKL(
        block_out_channels=vae_channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=latent_size * 2 ** (n - 1),
    )
    torch.manual_seed(0)
    m = len(unet_channels)
    unet = UNet2DConditionModel(
        block_out_channels=unet_channels,
        layers_per_block=1,
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (m - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (m - 1) + ("UpBlock2D",),
        cross_attention_dim=text_hidden_size,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=10,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=CLIPTextModel.from_pretrained(os.path.join(clip_dir, "text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(os.path.join(clip_dir, "tokenizer")),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> str:
    """A tiny SD pipeline folder (import this fixture into a test module to use it)."""
    return write_tiny_sd(str(tmp_path_factory.mktemp("tiny_sd") / "sd"))


@pytest.fixture(scope="session")
def caption_file(tmp_path_factory) -> str:
    """Two captioned 8-image tasks of 8×8 RGB images ("digit 0" … "digit 3")."""
    from conftest import make_tasks

    from continual_diffusers.data import save_tasks

    path = str(tmp_path_factory.mktemp("data") / "captions.npz")
    save_tasks(path, make_tasks("text"))
    return path
