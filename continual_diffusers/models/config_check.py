"""Model configs read from files (a UNet's, VAE's, slot encoder's or text encoder's config.json, a
`--model_config_name_or_path`), checked before anything is built from them:

1. every value: floats finite, integers within ±(2³¹ − 1), lists at most `MAX_CONFIG_LIST` entries, strings at most
   `MAX_CONFIG_STRING` characters, nesting at most `MAX_CONFIG_DEPTH` levels (so no value of a config can overflow
   a float conversion, allocate by its length, or recurse a library away);
2. the sizes of the model (per model kind: `UNET_SIZES`, `VAE_SIZES`, `TEXT_ENCODER_SIZES`, ...) within
   utils/bounds.py, and the known real-valued keys (`FLOAT_BOUNDS`: `norm_eps` in (0, 1), dropouts in [0, 1), ...);
3. the model built on an *empty skeleton* (accelerate's `init_empty_weights`: parameters on the meta device, no
   memory), which refuses what diffusers/transformers cannot build (wrong types, unknown block types, widths that
   do not divide), and counts its parameters: at most `MAX_PARAMETERS`;
4. one forward pass of the skeleton on meta tensors (`probe_forward`: shapes only, no arithmetic, no memory), which
   refuses what builds but cannot run (a `true` where a group count belongs, a null epsilon, an unknown up-sampling
   type whose shapes do not meet), so such a config fails at load time instead of in the middle of sampling.

The skeleton is returned, so the caller can compare it with the weights file's header (models/weights.py) before
the real model is built.
"""

from __future__ import annotations

import math

import torch

from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.logging import quiet_libraries

MAX_PARAMETERS = 5 * 10**9  # 20 GB of float32 weights; the largest UNets in use have 2.6-4.3 B parameters
MAX_CONFIG_INT = 2**31 - 1
MAX_CONFIG_LIST = 64  # block types and widths have one entry per level (at most 8)
MAX_CONFIG_STRING = 4096
MAX_CONFIG_DEPTH = 8

# Sizes a UNet config.json may hold (UNet2DModel / UNet2DConditionModel keys): an int, or one per level.
UNET_SIZES = {
    "sample_size": b.RESOLUTION,
    "in_channels": b.CHANNELS,
    "out_channels": b.CHANNELS,
    "block_out_channels": b.CHANNELS,
    "layers_per_block": b.LAYERS_PER_BLOCK,
    "norm_num_groups": b.CHANNELS,
    "num_class_embeds": b.Bounds(int, 1, b.NUM_CLASSES.hi + 1),  # + the CFG null class
    "cross_attention_dim": b.CHANNELS,
    "attention_head_dim": b.CHANNELS,
    "num_attention_heads": b.CHANNELS,
    "transformer_layers_per_block": b.LAYERS_PER_BLOCK,
    "time_embedding_dim": b.CHANNELS,
    "encoder_hid_dim": b.CHANNELS,
    "projection_class_embeddings_input_dim": b.CHANNELS,
    "addition_time_embed_dim": b.CHANNELS,
    "time_cond_proj_dim": b.CHANNELS,
    "addition_embed_type_num_heads": b.CHANNELS,
    "freq_shift": b.Bounds(int, 0, 4096),
    "downsample_padding": b.Bounds(int, 0, 8),
    "conv_in_kernel": b.Bounds(int, 1, 15),
    "conv_out_kernel": b.Bounds(int, 1, 15),
}
# AutoencoderKL (the latent models' VAE).
VAE_SIZES = {
    "sample_size": b.RESOLUTION,
    "in_channels": b.CHANNELS,
    "out_channels": b.CHANNELS,
    "block_out_channels": b.CHANNELS,
    "layers_per_block": b.LAYERS_PER_BLOCK,
    "latent_channels": b.CHANNELS,
    "norm_num_groups": b.CHANNELS,
}
# CLIPTextConfig (text models' encoder): CLIP-L is 768 wide with 12 layers, OpenCLIP bigG 1280 wide with 32.
TEXT_ENCODER_SIZES = {
    "vocab_size": b.Bounds(int, 1, 10**6),
    "hidden_size": b.CHANNELS,
    "intermediate_size": b.Bounds(int, 1, 4 * b.CHANNELS.hi),
    "projection_dim": b.CHANNELS,
    "num_hidden_layers": b.Bounds(int, 1, 128),
    "num_attention_heads": b.Bounds(int, 1, 256),
    "max_position_embeddings": b.Bounds(int, 1, 65_536),
}
# Real-valued keys of the configs above, wherever they appear.
FLOAT_BOUNDS = {
    "norm_eps": b.OPEN_UNIT,
    "layer_norm_eps": b.OPEN_UNIT,
    "dropout": b.PROBABILITY,
    "attention_dropout": b.PROBABILITY,
    "resnet_out_scale_factor": b.POSITIVE,
    "mid_block_scale_factor": b.POSITIVE,
    "scaling_factor": b.POSITIVE,
    "shift_factor": b.FINITE,
    "initializer_range": b.NON_NEGATIVE,
    "initializer_factor": b.NON_NEGATIVE,
    "decoder_loss_weight": b.NON_NEGATIVE,
}


def check_config_values(config: dict, where: str) -> None:
    """Rule 1 of the module docstring, over the whole config (iteratively: no recursion)."""
    stack = [(key, value, 1) for key, value in config.items()]
    while stack:
        key, value, depth = stack.pop()
        name = f"{where}: {key}"
        if depth > MAX_CONFIG_DEPTH:
            raise UserInputError(f"{name} is nested deeper than {MAX_CONFIG_DEPTH} levels")
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"{name} must be finite, got {value}")
        if isinstance(value, int) and abs(value) > MAX_CONFIG_INT:
            raise UserInputError(f"{name} must be within ±{MAX_CONFIG_INT}, got {b.shown(value)}")
        if isinstance(value, str) and len(value) > MAX_CONFIG_STRING:
            raise UserInputError(f"{name} is a string of {len(value)} characters, at most {MAX_CONFIG_STRING}")
        if isinstance(value, list):
            if len(value) > MAX_CONFIG_LIST:
                raise UserInputError(f"{name} has {len(value)} entries, at most {MAX_CONFIG_LIST}")
            stack.extend((key, item, depth + 1) for item in value)
        elif isinstance(value, dict):
            if len(value) > MAX_CONFIG_LIST:
                raise UserInputError(f"{name} has {len(value)} entries, at most {MAX_CONFIG_LIST}")
            stack.extend((f"{key}.{k}", v, depth + 1) for k, v in value.items())


def check_model_config(cls, config, where: str, sizes: dict[str, b.Bounds]):
    """Refuse (`UserInputError`) a model config read from a file before it is built for real (the three rules of
    the module docstring); returns the model's empty skeleton (parameters on the meta device)."""
    if not isinstance(config, dict):
        raise UserInputError(f"{where}: holds a JSON {type(config).__name__}, not a config object")
    for key, bounds in sizes.items():
        value = config.get(key)
        items = value if isinstance(value, (list, tuple)) else [] if value is None else [value]
        if len(items) > b.NUM_LEVELS.hi:
            raise UserInputError(f"{where}: {key} has {len(items)} entries, at most {b.NUM_LEVELS.hi} (one per level)")
        for item in items:
            for size in item if isinstance(item, (list, tuple)) else [item]:
                bounds.check(f"{where}: {key}", size)
    for key, bounds in FLOAT_BOUNDS.items():
        if config.get(key) is not None:
            bounds.check(f"{where}: {key}", config[key])
    check_config_values(config, where)  # after the named keys, whose messages say more
    name = config.get("_class_name", cls.__name__)
    if name != cls.__name__:
        shown = name if isinstance(name, str) and name.isidentifier() else b.shown(name)
        raise UserInputError(f"{where}: describes a {shown}, this model needs a {cls.__name__}")
    skeleton = empty_skeleton(cls, config, where)
    count = sum(p.numel() for p in skeleton.parameters())
    if count > MAX_PARAMETERS:
        raise UserInputError(f"{where}: {count:,} parameters, more than the {MAX_PARAMETERS:,} allowed")
    probe_forward(skeleton, where)
    return skeleton


def probe_forward(skeleton, where: str) -> None:
    """One forward pass of an empty skeleton on meta tensors of batch 1 (UNets, the VAE, the CLIP text encoder;
    other models are not probed): `UserInputError` if the model its config describes cannot run."""
    inputs = _probe_inputs(skeleton)
    if inputs is None:
        return
    try:
        with torch.no_grad(), quiet_libraries():
            skeleton(**inputs)
    except Exception as err:  # the library's failure on this config, whatever its type
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserInputError(f"{where}: the model this config describes cannot run ({message[:300]})") from err


def _probe_inputs(model) -> dict | None:
    """Meta inputs of batch 1 for the kinds of model this library loads from files."""
    name, config = type(model).__name__, model.config

    def meta(*shape, dtype=torch.float32):
        return torch.empty(shape, dtype=dtype, device="meta")

    def square(size) -> tuple[int, int]:
        return (size, size) if isinstance(size, int) else tuple(size)

    if name in ("UNet2DModel", "UNet2DConditionModel"):
        inputs = {"sample": meta(1, config.in_channels, *square(config.sample_size)), "timestep": meta(1)}
        if getattr(config, "num_class_embeds", None):
            inputs["class_labels"] = meta(1, dtype=torch.long)
        if name == "UNet2DConditionModel":
            inputs["encoder_hidden_states"] = meta(1, 1, config.cross_attention_dim)
        return inputs
    if name == "AutoencoderKL":
        return {"sample": meta(1, config.in_channels, *square(config.sample_size))}
    if name == "CLIPTextModel":
        return {"input_ids": meta(1, config.max_position_embeddings, dtype=torch.long)}
    return None


def empty_skeleton(cls, config: dict, where: str):
    """`cls` built from `config` with its parameters on the meta device (nothing allocated): a diffusers model
    (`from_config`) or a transformers one (its `config_class`)."""
    from accelerate import init_empty_weights

    try:
        with init_empty_weights(), quiet_libraries():
            if hasattr(cls, "from_config"):
                return cls.from_config(config)
            return cls(cls.config_class.from_dict(config))
    except Exception as err:  # whatever the library refuses in a config (ValueError, TypeError, its own types)
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserInputError(f"{where}: not a valid {cls.__name__} config ({message[:300]})") from err
