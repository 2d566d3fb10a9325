"""LoRA adapters on a diffusers UNet as files (peft, Hu et al. 2021): each adapter in the format
`StableDiffusionPipeline.load_lora_weights` reads, and a plain copy of the UNet with adapters fused into its base
weights. The per-task adapters strategy is `strategies.lora`; exports write a UNet's adapters with these."""

from __future__ import annotations

import copy
import os

from torch import nn


def lora_state_dicts(unet: nn.Module, adapters: list[str]) -> dict[str, dict]:
    """{adapter: its LoRA weights with diffusers' key names}, the format `save_lora_weights` expects."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return {a: convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=a)) for a in adapters}


def save_lora_adapters(unet: nn.Module, adapters: list[str], directory: str) -> dict[str, int]:
    """Write each adapter to `directory/<adapter>/pytorch_lora_weights.safetensors`; returns their sizes (bytes)."""
    from diffusers import StableDiffusionPipeline

    sizes = {}
    for name, state in lora_state_dicts(unet, adapters).items():
        path = os.path.join(directory, name)
        StableDiffusionPipeline.save_lora_weights(path, unet_lora_layers=state, safe_serialization=True)
        sizes[name] = os.path.getsize(os.path.join(path, "pytorch_lora_weights.safetensors"))
    return sizes


def merged_copy(unet: nn.Module, adapters: list[str]) -> nn.Module:
    """A plain copy of `unet` with `adapters` fused into the base weights and every LoRA layer removed."""
    plain = copy.deepcopy(unet)
    plain.fuse_lora(adapter_names=adapters)
    plain.unload_lora()
    return plain


def has_adapters(unet: nn.Module) -> bool:
    return bool(getattr(unet, "peft_config", None))
