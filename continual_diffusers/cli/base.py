"""Parsers made of typed configs; `RunOptions`: a training run's configuration, one validated config per
component, built once from the parsed flags (the Namespace is only read, never written); and `RunParts`: what an
entry point builds from them (tasks, conditioning, denoiser, objective, datasets, model spec). The parser itself
lives in utils/entrypoint.py (the light tools import it without the models); `--config` reads a JSON file of
flags."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import (
    DataConfig,
    EvaluationConfig,
    HubConfig,
    LaunchConfig,
    LDMConfig,
    ModelConfig,
    ObjectiveConfig,
    SamplingConfig,
)
from ..strategies import LoRAConfig
from ..training.train_config import TrainConfig
from ..utils.entrypoint import Parser, add_config_arg, new_parser, show_default
from ..utils.errors import UserInputError
from ..utils.options import add_options, from_args

__all__ = ["Parser", "RunOptions", "RunParts", "add_config_arg", "new_parser", "run_options", "show_default"]


@dataclass(frozen=True)
class RunOptions:
    """A training run's typed configuration (main_ddpm: model and the conditioning kinds' options; main_ldm: ldm and
    lora)."""

    data: DataConfig
    objective: ObjectiveConfig
    strategies: dict  # name → StrategyConfig of each enabled strategy, in hook order
    train: TrainConfig
    run: LaunchConfig
    hub: HubConfig
    sampling: SamplingConfig
    evaluation: EvaluationConfig
    model: ModelConfig | None = None
    conditioning_options: dict = dataclasses.field(default_factory=dict)  # kind → its flags (`Conditioning.options`)
    ldm: LDMConfig | None = None
    lora: LoRAConfig | None = None
    derived: dict = dataclasses.field(default_factory=dict)  # flag values the run derived (config.json "args")

    def resolved(self) -> dict:
        """{component: its config as a dict}, what config.json records as "config" (a conditioning kind's options
        under the kind's name, e.g. "slots"; the end-of-task sampler, `train.validation`, is "sampling")."""
        skip = ("derived", "conditioning_options")
        parts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        parts["strategies"] = {name: dataclasses.asdict(c) for name, c in self.strategies.items()}
        parts.update(self.conditioning_options)
        resolved = {k: v if isinstance(v, dict) else dataclasses.asdict(v) for k, v in parts.items() if v is not None}
        del resolved["train"]["validation"]  # the same object as "sampling": recorded once
        return resolved


@dataclass(frozen=True)
class RunParts:
    """What a training entry point builds from its `RunOptions`, validated, before anything is written.

    Attributes:
        tasks: the training `TaskSequence`.
        conditioning: the run's `Conditioning` (its text encoder, for text models: `conditioning.text_components`).
        denoiser: `ScoreModel` / `EnergyModel` around the UNet (+ the slot encoder of slot models).
        objective: the `DenoisingObjective` over the training noise schedule.
        spec: the `ModelSpec` every task export records (continual_diffusers.json).
        transform: the pixel `ImageTransform` of training (crop, flip, scale of uint8 images).
        make_dataset: `Task` → its training dataset (pixels, or latents for latent models).
        codec: latent models: the VAE's `LatentCodec`; components: the loaded `LatentComponents`.
    """

    tasks: Any
    conditioning: Any
    denoiser: Any
    objective: Any
    spec: Any
    transform: Any
    make_dataset: Callable
    codec: Any = None
    components: Any = None

    @property
    def latent(self) -> bool:
        return self.codec is not None

    @property
    def stored_image_transform(self):
        """uint8 images → model inputs, for strategies that store images (replay): the pixel transform, then the
        VAE's encoder for latent models."""
        if self.codec is None:
            return self.transform
        from ..models.latent import LatentTransform

        return LatentTransform(self.transform, self.codec)

    @property
    def vae(self):
        return None if self.components is None else self.components.vae

    @property
    def decode_fn(self):
        return None if self.codec is None else self.codec.decode


def run_options(args: argparse.Namespace, **components) -> RunOptions:
    """The components every training entry point shares, built (and so validated) from the flags; `components`:
    the entry point's own (model and slots, or ldm and lora)."""
    from ..sampling.generate import resolve_guidance
    from .strategy import strategy_configs

    if args.ema_scope is not None and not args.use_ema:
        raise UserInputError(f"--ema_scope {args.ema_scope} sets how the EMA spans tasks, so it needs --use_ema")
    sampling = from_args(SamplingConfig, args)
    model = components.get("model") or components.get("ldm")
    train = from_args(TrainConfig, args, output_dir=args.output_dir, validation=sampling, uncond_p=_dropout(model))
    resolve_guidance(sampling.guidance_scale, train.uncond_p > 0, "--guidance_scale")  # refused before anything runs
    hub = from_args(HubConfig, args)
    if hub.push_to_hub:
        hub.repo_id(args.output_dir)
    objective = components.pop("objective", None) or from_args(ObjectiveConfig, args)
    options = RunOptions(
        data=from_args(DataConfig, args), objective=objective,
        strategies=strategy_configs(args), train=train, run=from_args(LaunchConfig, args), hub=hub, sampling=sampling,
        evaluation=from_args(EvaluationConfig, args), **components,
    )  # fmt: skip
    if options.objective.ddpm_num_steps is not None:  # main_ldm: the pretrained scheduler's T, checked once loaded
        sampling.check_steps(options.objective.ddpm_num_steps, "--ddpm_num_steps")
    return options


def _dropout(model) -> float:
    """CFG condition dropout: --uncond_p with --classifier_free_guidance (main_ldm: --uncond_p alone)."""
    if isinstance(model, LDMConfig):
        return model.uncond_p
    return model.uncond_p if model.classifier_free_guidance else 0.0


def build_parser(description: str, *groups) -> argparse.ArgumentParser:
    """A parser of config groups (a class: `add_options`; a function: it adds its flags), then `--config`."""
    parser = new_parser(description)
    for group in groups:
        if isinstance(group, type):
            add_options(parser, group)
        else:
            group(parser)
    add_config_arg(parser)
    return parser
