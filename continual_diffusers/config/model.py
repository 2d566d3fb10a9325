"""`ModelConfig` (and the conditioning kind's own flags) → the conditioning and the UNet main_ddpm trains: the UNet
is built from the size flags (`UNetSpec`) or from a diffusers config file, which is checked against the data and the
conditioning first. Nothing here names a kind: each builds itself (`Conditioning.build`)."""

from __future__ import annotations

import os

from ..data import TaskSequence
from ..models.conditioning import BuildContext, Conditioning, check_unet_takes, conditioning_class
from ..models.unet import UNetSpec, build_unet, check_unet_config, unet_class
from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json
from .run import ModelConfig


def build_conditioning(
    model: ModelConfig, kind: str, tasks: TaskSequence, resolution: int, prompts, kind_options=None
) -> Conditioning:
    """The conditioning of `kind` for training on `tasks`, checked against them and the end-of-task `prompts`;
    `kind_options`: the kind's own flags (an instance of its `options` class), if it has any."""
    cls = conditioning_class(kind, "--conditioning")
    cls.check_labels(tasks)
    context = BuildContext(tasks, resolution, model.classifier_free_guidance, model, kind_options)
    conditioning = cls.build(context)
    conditioning.check_training(tasks, prompts)
    return conditioning


def build_unet_from_config(model: ModelConfig, tasks: TaskSequence, conditioning: Conditioning, resolution: int):
    if model.model_config_name_or_path:
        return _unet_from_config(model.model_config_name_or_path, conditioning, tasks, resolution)
    spec = UNetSpec(
        resolution=resolution,
        in_channels=tasks.num_channels,
        block_out_channels=tuple(model.block_out_channels) if model.block_out_channels else None,
        layers_per_block=model.layers_per_block,
        norm_num_groups=model.norm_num_groups,
        **conditioning.unet_fields(),
    )
    return build_unet(spec)


def _unet_from_config(path: str, conditioning: Conditioning, tasks: TaskSequence, resolution: int):
    file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    try:
        config = read_json(file)  # bounded: a regular file of at most max_json_bytes(), nesting bounded
    except UserInputError as err:
        raise UserInputError(f"--model_config_name_or_path {err}") from None
    cls = unet_class(conditioning)
    where = f"--model_config_name_or_path {file}"
    if isinstance(config, dict):
        config.setdefault("sample_size", resolution)
    check_unet_config(cls, config, where, resolution, tasks.num_channels)
    check_unet_takes(conditioning, config, f"{where}: the UNet")
    return cls.from_config(config)
