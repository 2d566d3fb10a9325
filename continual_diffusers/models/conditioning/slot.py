"""`SlotConditioning`: an image's own K slots as the condition (Slot Attention, `models/slots.py`; Jiang et al. 2023,
Latent Slot Diffusion); the null condition is a learned null slot set. Training encodes the batch's *images*
(`training_inputs`), sampling takes slot sets. Its flags are `SlotConfig` (the "Slots" group of main_ddpm.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ...utils import bounds as b
from ...utils.errors import UserInputError
from ...utils.options import Checked, option, options_group
from .base import BuildContext, Conditioning, ConditionParams, _get

# An export's slot_encoder/config.json: its sizes, checked before the encoder is built.
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
SLOT_ENTRIES = {"num_slots": b.NUM_SLOTS, "slot_dim": b.CHANNELS, "num_iterations": b.SLOT_ITERATIONS}


@options_group(
    "Slots", "--conditioning slots: CNN + Slot Attention encoder trained with the UNet (Locatello et al. 2020)"
)
@dataclass
class SlotConfig(Checked):
    num_slots: int = option(4, bounds=b.NUM_SLOTS, help="K slots per image (objects + background)")
    slot_dim: int = option(64, bounds=b.CHANNELS, help="slot width D (the UNet's cross_attention_dim)")
    slot_iters: int = option(3, bounds=b.SLOT_ITERATIONS, help="T Slot Attention iterations")
    slot_encoder_channels: int = option(32, bounds=b.CHANNELS, help="width of the slot encoder's CNN")
    slot_init: str = option(
        "sampled", choices=("sampled", "learned"),
        help="initial slots: sampled N(μ, σ²) per image (exchangeable: slots bind to objects) or a learned set",
    )  # fmt: skip
    slot_decoder_weight: float = option(
        1.0, bounds=b.NON_NEGATIVE,
        help="λ of the auxiliary spatial-broadcast decoder loss that makes slots segment objects (0: the "
        "denoising loss alone, which let one slot describe several objects: FG-ARI 0.55 vs 0.85, docs/slots.md)",
    )  # fmt: skip
    slot_pixel_tokens: bool = option(
        False, help="append each pixel's value to its token (a colour cue for flat-colour objects)"
    )


class SlotParams(ConditionParams):
    """The slot encoder's sizes, recorded as "slots": {num_slots, slot_dim, num_iterations} (absent in a file: the
    encoder's own config.json is what loads)."""

    json_keys = ("slots",)

    def __init__(self, sizes: dict | None):
        self.sizes = dict(sizes) if sizes is not None else None

    @classmethod
    def from_json(cls, raw: dict, where: str, refuse) -> SlotParams:
        sizes = raw.get("slots")
        if sizes is None:
            return cls(None)
        if not isinstance(sizes, dict) or set(sizes) != set(SLOT_ENTRIES):
            raise refuse(f"slots must be an object of {sorted(SLOT_ENTRIES)}")
        for key, bounds in SLOT_ENTRIES.items():
            bounds.check(f"{where}: slots.{key}", sizes[key])
        return cls(sizes)

    def to_json(self) -> dict:
        return {} if self.sizes is None else {"slots": dict(self.sizes)}


class SlotConditioning(Conditioning):
    """Slots as the condition. The trainable `SlotEncoder` lives in the denoiser (it trains with the UNet); this
    object shares it to compute slots and the null set outside training.

    - training: `encode(images (B, C, H, W))` → `{"slot_images": images}`; the denoiser encodes them in its forward,
      so gradients reach the encoder. `drop` adds `slot_keep` (rows set to False get the null slot set).
    - sampling: `encode([slots_1, …])` (each (K', D), or one (B, K', D) tensor) → `{"encoder_hidden_states": …}`;
      K' may differ from K (composition concatenates slots taken from several images).
    """

    kind: Literal["slots"] = "slots"
    description = "slot"
    call_argument = "slots"
    cross_attention = True
    reconstructs_references = True
    params_type = SlotParams
    options = SlotConfig

    def __init__(self, encoder: nn.Module):
        self.encoder = encoder
        self.supports_null = encoder.null is not None

    @property
    def slot_dim(self) -> int:
        return self.encoder.config.slot_dim

    def slots(self, images: torch.Tensor):
        """`SlotEncoderOutput` (slots (B, K, D), attention (B, K, H, W)) of images in the model's input space."""
        return self.encoder(images.to(self.encoder.device, self.encoder.dtype))

    def encode(self, source, device: torch.device) -> dict:
        if isinstance(source, torch.Tensor) and source.dim() == 4:
            if not source.is_floating_point():
                raise UserInputError("slot conditioning encodes float images in [-1, 1] (or latents), got integers")
            return {"slot_images": source.to(device)}
        if isinstance(source, torch.Tensor) and source.dim() == 3:
            slots = source
        elif isinstance(source, list | tuple) and source and all(isinstance(s, torch.Tensor) for s in source):
            shapes = {tuple(s.shape) for s in source}
            if len(shapes) != 1 or len(next(iter(shapes))) != 2:
                raise UserInputError(
                    f"slot sets to sample from must all be (K', D) of one shape, got {sorted(shapes)}"
                )
            slots = torch.stack(list(source))
        else:
            raise UserInputError(
                "a slot-conditioned model is conditioned on images (B, C, H, W) or on slot sets (K', D), "
                f"not on {type(source).__name__} labels; see evaluate.py --slot_mode"
            )
        if slots.shape[-1] != self.slot_dim:
            raise UserInputError(f"slots have width {slots.shape[-1]}, but this model's slot_dim is {self.slot_dim}")
        return {"encoder_hidden_states": slots.to(device)}

    def null(self, batch_size: int, device: torch.device) -> dict:
        return {"encoder_hidden_states": self.encoder.null_slots(batch_size).to(device)}

    def drop(self, cond: dict, keep: torch.Tensor) -> dict:
        if "slot_images" not in cond:
            raise ValueError("CFG dropout of slot conditions applies to training batches (slot_images)")
        return {**cond, "slot_keep": keep}

    def training_inputs(self, batch: dict) -> torch.Tensor:
        """A training batch's images: the denoiser encodes them into slots in its forward."""
        return batch["images"]

    def training_noise(self, cond: dict, generator: torch.Generator) -> dict:
        """Add `slot_noise`, the ξ (B, K, D) of sampled initial slots, drawn from the training step's generator:
        from the global RNG a resumed run would draw other slots than the uninterrupted one."""
        config = self.encoder.config
        if config.slot_init != "sampled":
            return cond
        shape = (cond["slot_images"].shape[0], config.num_slots, config.slot_dim)
        return {**cond, "slot_noise": torch.randn(shape, generator=generator, device=generator.device)}

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def build(cls, context: BuildContext) -> SlotConditioning:
        """A new slot encoder of the --num_slots ... flags (`SlotConfig`), with a null slot set under CFG."""
        from ..slots import SlotEncoder

        s = context.options if context.options is not None else SlotConfig()
        encoder = SlotEncoder(
            in_channels=context.tasks.num_channels, resolution=context.resolution, num_slots=s.num_slots,
            slot_dim=s.slot_dim, num_iterations=s.slot_iters, hidden_channels=s.slot_encoder_channels,
            null_slots=context.classifier_free_guidance, slot_init=s.slot_init, pixel_tokens=s.slot_pixel_tokens,
            decoder_loss_weight=s.slot_decoder_weight,
        )  # fmt: skip
        return cls(encoder)

    @classmethod
    def from_spec(cls, spec, modules: dict) -> SlotConditioning:
        return cls(modules["slot_encoder"])

    @classmethod
    def load_modules(cls, task_dir: str, weights: str) -> dict:
        """The slot encoder averaged (EMA) or trained together with the UNet folder `weights`: the matching pair
        (unet/ ↔ slot_encoder/, unet_training/ ↔ slot_encoder_training/, older unet_ema/ ↔ slot_encoder_ema/)."""
        from ..components import load_model
        from ..slots import SlotEncoder

        sub = weights.replace("unet", "slot_encoder")
        return {"slot_encoder": load_model(SlotEncoder, task_dir, sub, "the slot encoder", SLOT_ENCODER_SIZES)}

    @classmethod
    def params_from_components(cls, unet_config, modules: dict) -> tuple[SlotParams, bool] | None:
        encoder = modules.get("slot_encoder")
        if encoder is None:
            return None
        return SlotParams({k: encoder.config[k] for k in SLOT_ENTRIES}), encoder.null is not None

    def params(self) -> SlotParams:
        return SlotParams({k: self.encoder.config[k] for k in SLOT_ENTRIES})

    def modules(self) -> dict:
        return {"slot_encoder": self.encoder}

    @property
    def trained_module(self) -> nn.Module:
        return self.encoder

    # -------------------------------------------------------------------------------------------------- UNet
    @classmethod
    def unet_arguments(cls, spec) -> dict:
        if not spec.cross_attention_dim:
            raise UserInputError("slots-conditioned UNet needs cross_attention_dim (slot_dim)")
        return {"cross_attention_dim": spec.cross_attention_dim}

    def unet_fields(self) -> dict:
        return {"conditioning": self.kind, "cross_attention_dim": self.slot_dim}

    def unet_mismatch(self, config) -> str | None:
        why = super().unet_mismatch(config)
        width = _get(config, "cross_attention_dim")
        if why is None and width != self.slot_dim:
            why = f"has cross_attention_dim={width} but the slots are {self.slot_dim} wide"
        return why

    # ---------------------------------------------------------------------------------------------- the run
    @classmethod
    def check_run_options(cls, opts) -> None:
        """What slot conditioning cannot be combined with, each refused with what to do instead."""
        if "generative_replay" in opts.strategies:
            raise UserInputError(
                "generative replay is not available for --conditioning slots: a slot model's condition is an "
                "image's own slots, so a generated replay has no condition of its own (the teacher would have to "
                "sample from its null slot set and be distilled on the replay's slots, which the strategy does not "
                "do); use buffer replay (--buffer_type), EWC (--ewc_loss) or SI (--strategy si)"
            )
        if opts.evaluation.eval_every_task:
            raise UserInputError(
                "--eval_every_task scores class-conditional or unconditional samples with an oracle; evaluate a "
                "slot model with evaluate.py --slot_mode reconstruct|masks|compose, or benchmarks/bench_slots.py"
            )
        if opts.model.model_config_name_or_path:
            raise UserInputError(
                "--model_config_name_or_path is not supported with --conditioning slots; use the flags"
            )
        if not opts.model.classifier_free_guidance:
            raise UserInputError(
                "--conditioning slots needs --classifier_free_guidance: the end-of-task samples and unconditional "
                "sampling use the learned null slot set, which only CFG training (--uncond_p) learns"
            )

    # ---------------------------------------------------------------------------------------------- sampling
    def rows(self, spec, requested, argument: str) -> list:
        """Slot sets, or images (N, C, H, W) whose slots are the condition (reconstruction)."""
        if requested is None:
            raise UserInputError(
                f"a slot model needs {argument}: images (N, C, H, W) or slot sets (N, K', D) to sample from"
            )
        if isinstance(requested, torch.Tensor) and requested.dim() == 4:
            requested = self.slots(requested).slots.cpu()
        return list(requested)

    def image_rows(self, model, images: torch.Tensor) -> list:
        """The slot sets of `images` under `model`'s own slot encoder (the model being saved: EMA weights)."""
        encoder = model.slot_encoder.eval()
        with torch.no_grad():
            return list(encoder(images.to(encoder.device, encoder.dtype)).slots)
