"""Parsers made of typed configs, and `RunOptions`: a training run's configuration, one validated config per
component, built once from the parsed flags (the Namespace is only read, never written). The parser itself lives
in utils/entrypoint.py (the light tools import it without the models); `--config` reads a JSON file of flags."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from ..config import (
    DataConfig,
    EvaluationConfig,
    HubConfig,
    LDMConfig,
    ModelConfig,
    ObjectiveConfig,
    RunConfig,
    SamplingConfig,
    SlotConfig,
)
from ..strategies import LoRAConfig
from ..training.config import TrainConfig
from ..utils.entrypoint import Parser, add_config_arg, new_parser, show_default
from ..utils.errors import UserInputError
from ..utils.options import add_options, from_args

__all__ = ["Parser", "RunOptions", "add_config_arg", "new_parser", "run_options", "show_default"]


@dataclass(frozen=True)
class RunOptions:
    """A training run's typed configuration (main_ddpm: model and slots; main_ldm: ldm and lora)."""

    data: DataConfig
    objective: ObjectiveConfig
    strategies: dict  # name → StrategyConfig of each enabled strategy, in hook order
    train: TrainConfig
    run: RunConfig
    hub: HubConfig
    sampling: SamplingConfig
    evaluation: EvaluationConfig
    model: ModelConfig | None = None
    slots: SlotConfig | None = None
    ldm: LDMConfig | None = None
    lora: LoRAConfig | None = None
    derived: dict = dataclasses.field(default_factory=dict)  # flag values the run derived (config.json "args")

    def resolved(self) -> dict:
        """{component: its config as a dict}, what config.json records as "config"."""
        parts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "derived"}
        parts["strategies"] = {name: dataclasses.asdict(c) for name, c in self.strategies.items()}
        return {k: v if isinstance(v, dict) else dataclasses.asdict(v) for k, v in parts.items() if v is not None}


def run_options(args: argparse.Namespace, **components) -> RunOptions:
    """The components every training entry point shares, built (and so validated) from the flags; `components`:
    the entry point's own (model and slots, or ldm and lora)."""
    from .strategy import strategy_configs

    if args.ema_scope is not None and not args.use_ema:
        raise UserInputError(f"--ema_scope {args.ema_scope} sets how the EMA spans tasks, so it needs --use_ema")
    sampling = from_args(SamplingConfig, args)
    model = components.get("model") or components.get("ldm")
    train = from_args(
        TrainConfig, args, output_dir=args.output_dir, eval_batch_size=sampling.num_samples,
        validation_scheduler=sampling.scheduler, num_inference_steps=sampling.num_inference_steps,
        ddim_eta=sampling.ddim_eta, guidance_scale=sampling.guidance_scale,
        validation_prompts=sampling.validation_prompts or [], uncond_p=_dropout(model),
    )  # fmt: skip
    hub = from_args(HubConfig, args)
    if hub.push_to_hub:
        hub.repo_id(args.output_dir)
    objective = components.pop("objective", None) or from_args(ObjectiveConfig, args)
    options = RunOptions(
        data=from_args(DataConfig, args), objective=objective,
        strategies=strategy_configs(args), train=train, run=from_args(RunConfig, args), hub=hub, sampling=sampling,
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
