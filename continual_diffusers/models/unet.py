"""Builders for the diffusers UNets we train: `UNet2DModel` (unconditional or class-conditional) and
`UNet2DConditionModel` (cross-attention on text-encoder states, or on slots: `conditioning="slots"`).

Classifier-free guidance for class models uses a *reserved null class*: the embedding table has
`num_classes + 1` rows and row `num_classes` is the learned "no label" embedding. This is the same maths as a
separate learned null embedding (both add one learned vector to the time embedding) without subclassing or
forking the diffusers UNet, so the exported model is a stock `UNet2DModel`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Literal

from diffusers import UNet2DConditionModel, UNet2DModel

from ..utils import bounds as b
from ..utils.errors import UserInputError
from .config_check import UNET_SIZES, check_model_config

ConditioningKind = Literal["none", "class", "text", "slots"]


@dataclass(frozen=True)
class UNetSpec:
    """Architecture choices that the CLI exposes. `None` fields take the per-resolution default."""

    resolution: int
    in_channels: int
    conditioning: ConditioningKind = "none"
    num_classes: int = 0  # real classes; the table gets one more row when `null_class` is set
    null_class: bool = False  # reserve index `num_classes` as the CFG null label
    cross_attention_dim: int | None = None  # text models: the text encoder's hidden size; slot models: slot_dim
    block_out_channels: tuple[int, ...] | None = None
    layers_per_block: int | None = None
    norm_num_groups: int | None = None
    attention: bool = True  # self-attention at the lowest resolution (cross-attention for text models)
    extra: dict = field(default_factory=dict)


def default_channels(resolution: int) -> tuple[int, ...]:
    """Small sensible widths per resolution; each extra level halves the spatial size once."""
    if resolution <= 16:
        return (32, 64, 64)  # 8×8 → 2×2 bottleneck, ~1.1 M params: the CPU demo size
    if resolution <= 32:
        return (64, 128, 128, 256)
    if resolution <= 64:
        return (64, 128, 256, 256, 512)
    return (128, 128, 256, 256, 512, 512)  # diffusers train_unconditional default


def build_unet(spec: UNetSpec) -> UNet2DModel | UNet2DConditionModel:
    """Build a randomly initialised UNet from `spec` (raises `UserInputError` on inconsistent sizes)."""
    channels = tuple(spec.block_out_channels or default_channels(spec.resolution))
    b.NUM_LEVELS.check("the number of UNet levels (len(block_out_channels))", len(channels))
    groups = spec.norm_num_groups or min(32, channels[0])
    _check_sizes(spec.resolution, channels, groups)
    common = dict(
        sample_size=spec.resolution,
        in_channels=spec.in_channels,
        out_channels=spec.in_channels,
        block_out_channels=channels,
        layers_per_block=spec.layers_per_block or (1 if spec.resolution <= 16 else 2),
        norm_num_groups=groups,
        **spec.extra,
    )
    n = len(channels)
    if spec.conditioning in ("text", "slots"):
        if not spec.cross_attention_dim:
            raise UserInputError(
                f"{spec.conditioning}-conditioned UNet needs cross_attention_dim (text encoder width or slot_dim)"
            )
        attn_down, attn_up = "CrossAttnDownBlock2D", "CrossAttnUpBlock2D"
        down = tuple(attn_down if spec.attention and i > 0 else "DownBlock2D" for i in range(n))
        up = tuple(attn_up if spec.attention and i < n - 1 else "UpBlock2D" for i in range(n))
        heads = max(1, channels[0] // 8)  # head dim 8 at the first level
        return UNet2DConditionModel(
            down_block_types=down,
            up_block_types=up,
            cross_attention_dim=spec.cross_attention_dim,
            attention_head_dim=heads,
            **common,
        )
    down = tuple("AttnDownBlock2D" if spec.attention and i == n - 1 else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if spec.attention and i == 0 else "UpBlock2D" for i in range(n))
    num_embeds = None
    if spec.conditioning == "class":
        if spec.num_classes < 1:
            raise UserInputError("class-conditional UNet needs --num_class_labels >= 1")
        num_embeds = spec.num_classes + int(spec.null_class)
    return UNet2DModel(
        down_block_types=down,
        up_block_types=up,
        num_class_embeds=num_embeds,
        attention_head_dim=8,
        **common,
    )


def _check_sizes(resolution: int, channels: tuple[int, ...], groups: int) -> None:
    factor = 2 ** (len(channels) - 1)
    if resolution % factor:
        raise UserInputError(
            f"--resolution {resolution} is not divisible by {factor}, the UNet's downsampling factor for "
            f"{len(channels)} levels {channels}; pick a resolution that is a multiple of {factor} or fewer levels"
        )
    bad = [c for c in channels if c % groups]
    if bad:
        raise UserInputError(f"block_out_channels {channels}: {bad} not divisible by norm_num_groups={groups}")


# ------------------------------------------------------------------------------------- configs from files
def check_unet_config(cls, config, where: str, resolution: int, in_channels: int):
    """A UNet config for a model of `resolution` × `resolution` × `in_channels` (pixels, or latents): sane
    (`config_check.check_model_config`), predicting as many channels as it takes, sized for `resolution`. Returns
    its empty skeleton."""
    skeleton = check_model_config(cls, config, where, UNET_SIZES)
    check_unet_fits(cls, config, where, resolution, in_channels)
    return skeleton


def check_unet_fits(cls, config: dict, where: str, resolution: int, in_channels: int) -> None:
    """The part of `check_unet_config` that is about this model: channels in and out, sample size, levels."""
    defaults = inspect.signature(cls.__init__).parameters
    checks = {"in_channels": in_channels, "out_channels": in_channels, "sample_size": resolution}
    for key, want in checks.items():
        value = config.get(key, defaults[key].default)
        if value != want:
            raise UserInputError(f"{where}: {key}={value} but this model needs {want}")
    levels = len(config.get("block_out_channels") or (0,) * 4)  # diffusers' default has 4 levels
    factor = 2 ** (levels - 1)
    if resolution % factor:
        raise UserInputError(f"{where}: {levels} levels downsample by {factor}, which does not divide {resolution}")
