"""Conditioning: turn a batch's labels into the UNet's keyword arguments, and build the null condition used for
classifier-free guidance (Ho & Salimans 2022).

- `Unconditional`: no kwargs. Labelled data trains an unconditional model fine: labels are simply ignored.
- `ClassConditioning`: `class_labels=` (B,) long; the CFG null label is the reserved index `num_classes`.
- `TextConditioning`: `encoder_hidden_states=` (B, L, D) from a frozen CLIP text encoder; the null condition
  is the empty prompt "".
- `SlotConditioning`: an image's own K slots (Slot Attention, `models/slots.py`); the null condition is a learned
  null slot set. Training encodes the batch's *images* (`training_inputs`), sampling takes slot sets.

All four are `Conditioning`s, the one interface the trainer and the objective use (they never branch on `kind`):
`encode`, `null`, `drop(cond, keep)` (CFG dropout: rows where `keep` is False get the null condition), and the
training hooks `training_inputs(batch)` and `training_noise(cond, generator)`, no-ops unless a kind needs them.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import nn

from ..utils import bounds as b
from ..utils.errors import UserInputError


class Conditioning:
    """What every conditioning has. `kind` names it in export metadata ("none", "class", "text", "slots");
    `supports_null`: it has a null condition, so classifier-free guidance can be trained and sampled."""

    kind: str
    supports_null: bool = False

    def encode(self, labels, device: torch.device) -> dict:
        """The UNet's conditioning kwargs for `labels` (what `training_inputs` gives for a training batch)."""
        raise NotImplementedError

    def null(self, batch_size: int, device: torch.device) -> dict:
        """The null condition of `batch_size` rows (classifier-free guidance)."""
        raise NotImplementedError

    def drop(self, cond: dict, keep: torch.Tensor) -> dict:
        """CFG dropout: rows of `cond` where `keep` (B,) is False get the null condition. Default: `cond`."""
        return cond

    def training_inputs(self, batch: dict):
        """What `encode` takes for a training batch (dict with "images" [+ "labels"]). Default: its labels (None
        when it has none)."""
        return batch.get("labels")

    def training_noise(self, cond: dict, generator: torch.Generator) -> dict:
        """`cond` with the random inputs of the condition added, drawn from the training step's `generator` (so a
        resumed run repeats them). Default: `cond`, nothing to draw."""
        return cond

    def export_metadata(self) -> dict:
        """Entries of this conditioning in an export's `continual_diffusers.json`. Default: none."""
        return {}


class Unconditional(Conditioning):
    kind: Literal["none"] = "none"
    supports_null = False

    def encode(self, labels, device: torch.device) -> dict:
        return {}

    def null(self, batch_size: int, device: torch.device) -> dict:
        return {}


class ClassConditioning(Conditioning):
    kind: Literal["class"] = "class"

    def __init__(self, num_classes: int, null_class: bool):
        self.num_classes = num_classes
        self.supports_null = null_class
        self.null_index = num_classes if null_class else None

    def encode(self, labels: torch.Tensor, device: torch.device) -> dict:
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise UserInputError(
                f"class label out of range [0, {self.num_classes}): got {labels.min().item()}..{labels.max().item()}; "
                "set --num_class_labels to the number of classes over all tasks"
            )
        return {"class_labels": labels}

    def null(self, batch_size: int, device: torch.device) -> dict:
        if self.null_index is None:
            raise ValueError("this class-conditional model was trained without classifier-free guidance")
        return {"class_labels": torch.full((batch_size,), self.null_index, dtype=torch.long, device=device)}

    def drop(self, cond: dict, keep: torch.Tensor) -> dict:
        labels = cond["class_labels"]
        return {"class_labels": torch.where(keep, labels, torch.full_like(labels, self.null_index))}


class TextConditioning(Conditioning):
    """Frozen CLIP text encoder. Prompt embeddings are computed under `no_grad` and cached per prompt string,
    since continual-learning captions repeat heavily (e.g. one caption per class)."""

    kind: Literal["text"] = "text"
    supports_null = True

    def __init__(self, tokenizer, text_encoder: nn.Module, cache_size: int = 4096):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.requires_grad_(False).eval()
        self.hidden_size = text_encoder.config.hidden_size
        self._cache: dict[str, torch.Tensor] = {}
        self._cache_size = cache_size

    @torch.no_grad()
    def _embed(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            ids = self.tokenizer(
                missing,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.text_encoder.device)
            states = self.text_encoder(ids)[0].float().cpu()
            if len(self._cache) + len(missing) > self._cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, states))
        return torch.stack([self._cache[p] for p in prompts]).to(device)

    def encode(self, labels: list[str], device: torch.device) -> dict:
        if isinstance(labels, str) or not all(isinstance(p, str) for p in labels):
            raise UserInputError("text-conditioned models need a list of prompt strings")
        return {"encoder_hidden_states": self._embed(list(labels), device)}

    def null(self, batch_size: int, device: torch.device) -> dict:
        return {"encoder_hidden_states": self._embed([""] * batch_size, device)}

    def drop(self, cond: dict, keep: torch.Tensor) -> dict:
        states = cond["encoder_hidden_states"]
        null = self.null(states.shape[0], states.device)["encoder_hidden_states"]
        return {"encoder_hidden_states": torch.where(keep[:, None, None], states, null)}


class SlotConditioning(Conditioning):
    """Slots as the condition (Jiang et al. 2023, Latent Slot Diffusion). The trainable `SlotEncoder` lives in the
    denoiser (it trains with the UNet); this object shares it to compute slots and the null set outside training.

    - training: `encode(images (B, C, H, W))` → `{"slot_images": images}`; the denoiser encodes them in its forward,
      so gradients reach the encoder. `drop` adds `slot_keep` (rows set to False get the null slot set).
    - sampling: `encode([slots_1, …])` (each (K', D), or one (B, K', D) tensor) → `{"encoder_hidden_states": …}`;
      K' may differ from K (composition concatenates slots taken from several images).
    """

    kind: Literal["slots"] = "slots"

    def export_metadata(self) -> dict:
        return {"slots": {k: self.encoder.config[k] for k in ("num_slots", "slot_dim", "num_iterations")}}

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


def load_text_encoder(name_or_path: str, revision: str | None = None, variant: str | None = None):
    """Load (CLIPTokenizer, CLIPTextModel) from a hub id or local dir, in the Stable-Diffusion layout
    (`tokenizer/`, `text_encoder/` subfolders) or flat (both in one folder), checked as untrusted input
    (models/components.py): bounded config, safetensors weights that fit it, a tokenizer whose padded length the
    encoder can take."""
    from transformers import CLIPTextModel, CLIPTokenizer

    from .components import load_model, load_tokenizer
    from .config_check import TEXT_ENCODER_SIZES

    sd_layout = not os.path.isdir(name_or_path) or os.path.isdir(os.path.join(name_or_path, "text_encoder"))
    sub = (
        {"tokenizer": "tokenizer", "text_encoder": "text_encoder"}
        if sd_layout
        else {"tokenizer": "", "text_encoder": ""}
    )
    where = os.path.join(name_or_path, sub["tokenizer"]) if sub["tokenizer"] else name_or_path
    tokenizer = load_tokenizer(CLIPTokenizer, name_or_path, sub["tokenizer"], revision)
    encoder = load_model(
        CLIPTextModel, name_or_path, sub["text_encoder"], "the text encoder", TEXT_ENCODER_SIZES, variant, revision
    )
    check_tokenizer_fits(tokenizer, encoder.config, where)
    return tokenizer, encoder


def check_tokenizer_fits(tokenizer, encoder_config, where: str) -> None:
    """The tokenizer's ids and padded length must fit the text encoder (an id past its vocabulary is an index error
    in the middle of training; a tokenizer without model_max_length pads to 10³⁰ tokens)."""
    if len(tokenizer) > encoder_config.vocab_size:
        raise UserInputError(
            f"{where}: the tokenizer has {len(tokenizer)} tokens but the text encoder's vocabulary has "
            f"{encoder_config.vocab_size}; tokenizer and text encoder do not belong together"
        )
    positions = encoder_config.max_position_embeddings
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= positions:
        raise UserInputError(
            f"{where}: the tokenizer pads prompts to {b.shown(length)} tokens, but the text encoder takes at most "
            f"{positions} (set model_max_length in tokenizer_config.json)"
        )
