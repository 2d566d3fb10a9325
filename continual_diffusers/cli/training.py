"""main_ddpm's parser (generated from the typed configs) and the configs → library objects conversion."""

from __future__ import annotations

import argparse
import os

from ..config import (
    DataConfig,
    EvaluationConfig,
    HubConfig,
    ModelConfig,
    ObjectiveConfig,
    RunConfig,
    SamplingConfig,
    SlotConfig,
)
from ..config.model import build_conditioning, build_unet_from_config
from ..data import ImageTransform, TaskDataset, TaskSequence, load_split_digits, load_tasks
from ..models.denoiser import make_denoiser
from ..strategies import StrategyContext
from ..training.build import export_metadata, tracker_config  # noqa: F401 (tracker_config: re-exported by cli)
from ..training.config import TrainConfig
from ..utils.errors import UserInputError
from ..utils.options import from_args
from .base import RunOptions, build_parser, run_options
from .strategy import add_strategy_args, build_strategy

# main_ddpm's flag groups, in --help order (a config class, or a function that adds flags).
DDPM_GROUPS = (
    DataConfig, ModelConfig, SlotConfig, ObjectiveConfig, add_strategy_args, TrainConfig, RunConfig, HubConfig,
    SamplingConfig, EvaluationConfig,
)  # fmt: skip


def ddpm_parser() -> argparse.ArgumentParser:
    description = "Continual training of a pixel-space DDPM UNet (score- or energy-based) over a task sequence."
    return build_parser(description, *DDPM_GROUPS)


def ddpm_options(args: argparse.Namespace) -> RunOptions:
    """main_ddpm's typed configuration, validated, from its parsed flags."""
    return run_options(args, model=from_args(ModelConfig, args), slots=from_args(SlotConfig, args))


def train_config(args: argparse.Namespace) -> TrainConfig:
    return ddpm_options(args).train


def prediction_type(args: argparse.Namespace) -> str:
    """--prediction_type, or the model kind's default when unset (`default_prediction_type`)."""
    return from_args(ObjectiveConfig, args).resolved_prediction_type()


def load_training_tasks(data: DataConfig) -> TaskSequence:
    if data.data_path is None:
        return load_split_digits()[0]
    if not os.path.exists(data.data_path):
        raise UserInputError(f"--data_path {data.data_path}: no such task file or task folder")
    return load_tasks(data.data_path)


def conditioning_kind(opts: RunOptions, tasks: TaskSequence) -> str:
    model, kind = opts.model, opts.model.requested_kind
    if kind == "auto":
        kind = "class" if model.num_class_labels else {"class": "class", "text": "text"}.get(tasks.label_kind, "none")
    if kind == "class" and tasks.label_kind != "class":
        raise UserInputError(
            f"class conditioning needs integer class labels, but the task file has {tasks.label_kind}"
        )
    if kind == "text" and tasks.label_kind != "text":
        raise UserInputError(f"text conditioning needs caption labels, but the task file has {tasks.label_kind}")
    if kind == "slots":
        check_slot_run(opts)
    return kind


def check_slot_run(opts: RunOptions) -> None:
    """What slot conditioning cannot be combined with, each refused with what to do instead."""
    if "generative_replay" in opts.strategies:
        raise UserInputError(
            "generative replay is not available for --conditioning slots: a slot model's condition is an image's "
            "own slots, so a generated replay has no condition of its own (the teacher would have to sample from "
            "its null slot set and be distilled on the replay's slots, which the strategy does not do); use "
            "buffer replay (--buffer_type), EWC (--ewc_loss) or SI (--strategy si)"
        )
    if opts.evaluation.eval_every_task:
        raise UserInputError(
            "--eval_every_task scores class-conditional or unconditional samples with an oracle; evaluate a slot "
            "model with evaluate.py --slot_mode reconstruct|masks|compose, or benchmarks/bench_slots.py"
        )
    if opts.model.model_config_name_or_path:
        raise UserInputError("--model_config_name_or_path is not supported with --conditioning slots; use the flags")
    if not opts.model.classifier_free_guidance:
        raise UserInputError(
            "--conditioning slots needs --classifier_free_guidance: the end-of-task samples and unconditional "
            "sampling use the learned null slot set, which only CFG training (--uncond_p) learns"
        )


def build_ddpm(opts: RunOptions | argparse.Namespace) -> dict:
    """Everything main_ddpm needs, validated: tasks, transform, conditioning, denoiser, metadata."""
    opts = ddpm_options(opts) if isinstance(opts, argparse.Namespace) else opts
    tasks = load_training_tasks(opts.data)
    resolution = opts.data.resolution or min(tasks.image_size)
    kind = conditioning_kind(opts, tasks)
    prompts = opts.sampling.validation_prompts
    conditioning, text = build_conditioning(opts.model, opts.slots, prompts, tasks, kind, resolution)
    unet = build_unet_from_config(opts.model, tasks, conditioning, resolution)
    slot_encoder = conditioning.encoder if kind == "slots" else None  # trains with the UNet, inside the denoiser
    denoiser = make_denoiser(unet, opts.objective.energy_type, slot_encoder)
    transform = training_transform(opts.data, resolution)
    metadata = export_metadata(
        tasks, denoiser, conditioning, prediction_type=opts.objective.resolved_prediction_type(),
        classifier_free_guidance=opts.model.classifier_free_guidance, resolution=resolution,
        validation_prompts=opts.sampling.validation_prompts, data_path=opts.data.data_path or "bundled:split_digits",
    )  # fmt: skip
    return {
        "tasks": tasks,
        "conditioning": conditioning,
        "text": text,
        "denoiser": denoiser,
        "make_dataset": lambda task: TaskDataset(task, transform),
        "metadata": metadata,
    }


def training_transform(data: DataConfig, resolution: int) -> ImageTransform:
    return ImageTransform(resolution, center_crop=data.center_crop, random_flip=data.random_flip)


def strategy_context(opts: RunOptions, built: dict, train_scheduler, latent: bool = False) -> StrategyContext:
    """What the strategies may need from the run (`build_strategy`)."""
    tasks = built["tasks"]
    guidance = opts.sampling.guidance_scale if trains_cfg(opts) else 1.0
    return StrategyContext(
        tasks, model=built["denoiser"], transform=training_transform(opts.data, built["metadata"]["resolution"]),
        conditioning=built["conditioning"], train_scheduler=train_scheduler, seed=opts.train.seed,
        guidance_scale=guidance, latent=latent, use_ema=opts.train.use_ema, mixed_precision=opts.run.mixed_precision,
    )  # fmt: skip


def trains_cfg(opts: RunOptions) -> bool:
    """Does the run train classifier-free guidance (main_ldm: whenever captions are dropped)?"""
    return opts.model.classifier_free_guidance if opts.model is not None else opts.ldm.uncond_p > 0


def ddpm_strategy(opts: RunOptions, built: dict, train_scheduler):
    return build_strategy(opts.strategies, strategy_context(opts, built, train_scheduler))
