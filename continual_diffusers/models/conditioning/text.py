"""`TextConditioning`: `encoder_hidden_states=` (B, L, D) from a frozen CLIP text encoder; the null condition of
classifier-free guidance is the empty prompt "". The encoder and tokenizer are exported with each task
(text_encoder/, tokenizer/) and checked when loaded (models/components.py)."""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import nn

from ...utils import bounds as b
from ...utils.errors import UserInputError
from .base import BuildContext, Conditioning, ConditionParams, _get


class TextConditioning(Conditioning):
    """Frozen CLIP text encoder. Prompt embeddings are computed under `no_grad` and cached per prompt string,
    since continual-learning captions repeat heavily (e.g. one caption per class)."""

    kind: Literal["text"] = "text"
    description = "text-conditional"
    label_kind = auto_label_kind = "text"
    call_argument = "prompt"
    cross_attention = True
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

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def build(cls, context: BuildContext) -> TextConditioning:
        """The CLIP text encoder of --clip_text_pretrained_path (--revision, --variant)."""
        model = context.model
        if not getattr(model, "clip_text_pretrained_path", None):
            raise UserInputError("text conditioning needs --clip_text_pretrained_path (hub id or local folder)")
        return cls(*load_text_encoder(model.clip_text_pretrained_path, model.revision, model.variant))

    @classmethod
    def from_spec(cls, spec, modules: dict) -> TextConditioning:
        return cls(modules["tokenizer"], modules["text_encoder"])

    @classmethod
    def load_modules(cls, task_dir: str, weights: str) -> dict:
        tokenizer, encoder = load_text_encoder(task_dir)
        return {"tokenizer": tokenizer, "text_encoder": encoder}

    @classmethod
    def params_from_components(cls, unet_config, modules: dict) -> tuple[ConditionParams, bool] | None:
        return (ConditionParams(), True) if modules.get("text_encoder") is not None else None

    def modules(self) -> dict:
        return {"text_encoder": self.text_encoder, "tokenizer": self.tokenizer}

    @property
    def text_components(self) -> tuple:
        return self.tokenizer, self.text_encoder

    def to(self, device) -> TextConditioning:
        self.text_encoder.to(device)
        return self

    # -------------------------------------------------------------------------------------------------- UNet
    @classmethod
    def unet_arguments(cls, spec) -> dict:
        if not spec.cross_attention_dim:
            raise UserInputError("text-conditioned UNet needs cross_attention_dim (the text encoder's width)")
        return {"cross_attention_dim": spec.cross_attention_dim}

    def unet_fields(self) -> dict:
        return {"conditioning": self.kind, "cross_attention_dim": self.hidden_size}

    def unet_mismatch(self, config) -> str | None:
        why = super().unet_mismatch(config)
        if why is None and _get(config, "cross_attention_dim") != self.hidden_size:
            why = (
                f"has cross_attention_dim={_get(config, 'cross_attention_dim')} but the text encoder is "
                f"{self.hidden_size} wide"
            )
        return why

    # ---------------------------------------------------------------------------------------------- the run
    def check_training(self, tasks, validation_prompts) -> None:
        if not validation_prompts:
            raise UserInputError(
                "text conditioning needs --validation_prompts (TrainConfig.validation_prompts) for the end-of-task "
                "samples"
            )

    # ---------------------------------------------------------------------------------------------- sampling
    def rows(self, spec, requested, argument: str) -> list:
        """The requested prompts (default: the export's validation prompts)."""
        prompts = list(requested) if isinstance(requested, list | tuple) else [requested]
        if requested is None:
            prompts = list(spec.validation_prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise UserInputError(f"a text model needs {argument} (a prompt, or a list of prompts)")
        return prompts

    def concepts(self, spec, text: str, flag: str) -> list:
        """Prompts separated by "|"."""
        return [p.strip() for p in text.split("|")]


def load_text_encoder(name_or_path: str, revision: str | None = None, variant: str | None = None):
    """Load (CLIPTokenizer, CLIPTextModel) from a hub id or local dir, in the Stable-Diffusion layout
    (`tokenizer/`, `text_encoder/` subfolders) or flat (both in one folder), checked as untrusted input
    (models/components.py): bounded config, safetensors weights that fit it, a tokenizer whose padded length the
    encoder can take."""
    from transformers import CLIPTextModel, CLIPTokenizer

    from ..components import load_model, load_tokenizer
    from ..config_check import TEXT_ENCODER_SIZES

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
