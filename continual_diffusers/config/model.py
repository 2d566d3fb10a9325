"""`ModelConfig` (and `SlotConfig`) → the conditioning and the UNet main_ddpm trains: built from the size flags
(`UNetSpec`) or from a diffusers config file, which is checked against the data and the conditioning first."""

from __future__ import annotations

import os

from ..data import TaskSequence
from ..models.conditioning import (
    ClassConditioning,
    SlotConditioning,
    TextConditioning,
    Unconditional,
    load_text_encoder,
)
from ..models.slots import SlotEncoder
from ..models.unet import UNetSpec, build_unet, check_unet_config
from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json
from .run import ModelConfig, SlotConfig


def build_conditioning(
    model: ModelConfig, slots: SlotConfig, prompts: list | None, tasks: TaskSequence, kind: str, resolution: int
):
    """(conditioning of `kind`, text components or None); `prompts`: the end-of-task samples' (text models)."""
    cfg_on = model.classifier_free_guidance
    if kind == "class":
        num = model.num_class_labels or tasks.num_classes
        if num < tasks.num_classes:
            raise UserInputError(f"--num_class_labels {num} is smaller than the data's {tasks.num_classes} classes")
        return ClassConditioning(num, null_class=cfg_on), None
    if kind == "text":
        if not model.clip_text_pretrained_path:
            raise UserInputError("text conditioning needs --clip_text_pretrained_path (hub id or local folder)")
        if not prompts:
            raise UserInputError("text conditioning needs --validation_prompts for the end-of-task samples")
        tokenizer, encoder = load_text_encoder(model.clip_text_pretrained_path, model.revision, model.variant)
        return TextConditioning(tokenizer, encoder), (tokenizer, encoder)
    if kind == "slots":
        s = slots
        encoder = SlotEncoder(
            in_channels=tasks.num_channels, resolution=resolution, num_slots=s.num_slots, slot_dim=s.slot_dim,
            num_iterations=s.slot_iters, hidden_channels=s.slot_encoder_channels, null_slots=cfg_on,
            slot_init=s.slot_init, pixel_tokens=s.slot_pixel_tokens, decoder_loss_weight=s.slot_decoder_weight,
        )  # fmt: skip
        return SlotConditioning(encoder), None
    return Unconditional(), None


def build_unet_from_config(model: ModelConfig, tasks: TaskSequence, conditioning, resolution: int):
    if model.model_config_name_or_path:
        return _unet_from_config(model.model_config_name_or_path, conditioning, tasks, resolution)
    spec = UNetSpec(
        resolution=resolution,
        in_channels=tasks.num_channels,
        conditioning=conditioning.kind,
        num_classes=getattr(conditioning, "num_classes", 0),
        null_class=conditioning.supports_null and conditioning.kind == "class",
        cross_attention_dim=getattr(conditioning, "hidden_size", None) or getattr(conditioning, "slot_dim", None),
        block_out_channels=tuple(model.block_out_channels) if model.block_out_channels else None,
        layers_per_block=model.layers_per_block,
        norm_num_groups=model.norm_num_groups,
    )
    return build_unet(spec)


def _unet_from_config(path: str, conditioning, tasks: TaskSequence, resolution: int):
    from diffusers import UNet2DConditionModel, UNet2DModel

    file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    try:
        config = read_json(file)  # bounded: a regular file of at most max_json_bytes(), nesting bounded
    except UserInputError as err:
        raise UserInputError(f"--model_config_name_or_path {err}") from None
    cls = UNet2DConditionModel if conditioning.kind == "text" else UNet2DModel
    where = f"--model_config_name_or_path {file}"
    if isinstance(config, dict):
        config.setdefault("sample_size", resolution)
    check_unet_config(cls, config, where, resolution, tasks.num_channels)
    check_conditioning_fits(config, conditioning, where)
    return cls.from_config(config)


def check_conditioning_fits(config: dict, conditioning, where: str) -> None:
    """The UNet must take the run's condition: as many class embeddings as classes (+ the CFG null class), none
    for unconditional models, the text encoder's width as cross_attention_dim for text models."""
    kind = conditioning.kind
    want_embeds = conditioning.num_classes + int(conditioning.supports_null) if kind == "class" else None
    if config.get("num_class_embeds") != want_embeds or config.get("class_embed_type") is not None:
        raise UserInputError(
            f"{where}: num_class_embeds={config.get('num_class_embeds')} (class_embed_type="
            f"{config.get('class_embed_type')}) but this run needs num_class_embeds={want_embeds}"
        )
    if kind == "text" and config.get("cross_attention_dim") != conditioning.hidden_size:
        raise UserInputError(
            f"{where}: cross_attention_dim={config.get('cross_attention_dim')} but the text encoder's width is "
            f"{conditioning.hidden_size}"
        )
