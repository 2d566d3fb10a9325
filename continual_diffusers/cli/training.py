"""main_ddpm's parser (generated from the typed configs) and the configs → library objects conversion."""

from __future__ import annotations

import argparse

from ..config import (
    DataConfig,
    EvaluationConfig,
    HubConfig,
    LaunchConfig,
    ModelConfig,
    ObjectiveConfig,
    SamplingConfig,
)
from ..config.model import build_conditioning, build_unet_from_config
from ..data import ImageTransform, TaskDataset, TaskSequence, load_split_digits, load_task_file
from ..models.conditioning import CONDITIONINGS
from ..models.denoiser import make_denoiser
from ..models.spec import ModelSpec
from ..sampling.generate import resolve_guidance
from ..strategies import StrategyContext
from ..training.build import tracker_config  # noqa: F401 (re-exported by cli)
from ..training.train_config import TrainConfig
from ..utils.logging import get_logger
from ..utils.options import add_options, from_args
from .base import RunOptions, RunParts, build_parser, run_options
from .strategy import add_strategy_args, build_strategy

logger = get_logger(__name__)


def add_conditioning_args(parser: argparse.ArgumentParser) -> None:
    """The flag groups of the registered conditioning kinds that have options (`Conditioning.options`)."""
    for kind in CONDITIONINGS.values():
        if kind.options is not None:
            add_options(parser, kind.options)


def conditioning_options(args: argparse.Namespace) -> dict:
    """{kind name: its options config} of every registered kind with options, validated."""
    return {name: from_args(kind.options, args) for name, kind in CONDITIONINGS.items() if kind.options is not None}


# main_ddpm's flag groups, in --help order (a config class, or a function that adds flags).
DDPM_GROUPS = (
    DataConfig, ModelConfig, add_conditioning_args, ObjectiveConfig, add_strategy_args, TrainConfig, LaunchConfig,
    HubConfig, SamplingConfig, EvaluationConfig,
)  # fmt: skip


def ddpm_parser() -> argparse.ArgumentParser:
    description = "Continual training of a pixel-space DDPM UNet (score- or energy-based) over a task sequence."
    return build_parser(description, *DDPM_GROUPS)


def ddpm_options(args: argparse.Namespace) -> RunOptions:
    """main_ddpm's typed configuration, validated, from its parsed flags."""
    model = from_args(ModelConfig, args)
    return run_options(args, model=model, conditioning_options=conditioning_options(args))


def train_config(args: argparse.Namespace) -> TrainConfig:
    return ddpm_options(args).train


def prediction_type(args: argparse.Namespace) -> str:
    """--prediction_type, or the model kind's default when unset (`default_prediction_type`)."""
    return from_args(ObjectiveConfig, args).resolved_prediction_type()


def load_training_tasks(data: DataConfig) -> TaskSequence:
    if data.data_path is None:
        return load_split_digits()[0]
    return load_task_file(data.data_path, "--data_path")


def conditioning_kind(opts: RunOptions, tasks: TaskSequence) -> str:
    """The run's conditioning kind (`ModelConfig.resolved_kind` against the data), checked against its other
    options (`Conditioning.check_run_options`)."""
    kind = opts.model.resolved_kind(tasks.label_kind)
    CONDITIONINGS[kind].check_run_options(opts)
    return kind


def build_objective(opts: RunOptions):
    """The denoising objective over the DDPM schedule of the objective flags."""
    from diffusers import DDPMScheduler

    from ..objectives import DenoisingObjective

    objective = opts.objective
    prediction_type = objective.resolved_prediction_type()  # unset: v for score models, ε for energy models
    scheduler = DDPMScheduler(
        num_train_timesteps=objective.ddpm_num_steps,
        beta_schedule=objective.ddpm_beta_schedule,
        prediction_type=prediction_type,
        rescale_betas_zero_snr=objective.rescale_betas_zero_snr,
    )
    return DenoisingObjective(
        scheduler, prediction_type, objective.snr_gamma, objective.noise_offset, objective.timestep_sampling
    )


def build_ddpm(opts: RunOptions | argparse.Namespace) -> RunParts:
    """Everything main_ddpm needs, validated: tasks, conditioning, denoiser, objective, datasets, model spec."""
    opts = ddpm_options(opts) if isinstance(opts, argparse.Namespace) else opts
    tasks = load_training_tasks(opts.data)
    resolution = training_resolution(opts.data, tasks)
    kind = conditioning_kind(opts, tasks)
    prompts = opts.train.validation_prompts
    conditioning = build_conditioning(
        opts.model, kind, tasks, resolution, prompts, opts.conditioning_options.get(kind)
    )
    unet = build_unet_from_config(opts.model, tasks, conditioning, resolution)
    denoiser = make_denoiser(unet, opts.objective.energy_type, conditioning.trained_module)
    spec = ModelSpec.for_run(
        tasks, conditioning, energy_type=opts.objective.energy_type,
        prediction_type=opts.objective.resolved_prediction_type(),
        classifier_free_guidance=opts.model.classifier_free_guidance, resolution=resolution,
        validation_prompts=prompts, data_path=opts.data.data_path or "bundled:split_digits",
    )  # fmt: skip
    transform = training_transform(opts.data, resolution)
    return RunParts(
        tasks,
        conditioning,
        denoiser,
        build_objective(opts),
        spec,
        transform,
        lambda task: TaskDataset(task, transform),
    )


def training_resolution(data: DataConfig, tasks: TaskSequence) -> int:
    """--resolution, or the data's size; a --resolution above the images' size is allowed (the transform resizes)
    but warned about: the model then learns upsampled images."""
    height, width = tasks.image_size
    if data.resolution is not None and data.resolution > min(height, width):
        logger.warning(
            "--resolution %d upsamples the %d×%d images of the task file (the model learns %d×%d enlargements; "
            "leave --resolution out to train at the data's size)",
            data.resolution, height, width, data.resolution, data.resolution,
        )  # fmt: skip
    return data.resolution or min(height, width)


def training_transform(data: DataConfig, resolution: int) -> ImageTransform:
    return ImageTransform(resolution, center_crop=data.center_crop, random_flip=data.random_flip)


def strategy_context(opts: RunOptions, parts: RunParts) -> StrategyContext:
    """What the strategies may need from the run (`build_strategy`); replay stores uint8 images and turns them
    into the model's inputs with `parts.stored_image_transform` (pixels, or latents)."""
    guidance = resolve_guidance(opts.sampling.guidance_scale, trains_cfg(opts), "--guidance_scale")
    return StrategyContext(
        parts.tasks, model=parts.denoiser, transform=parts.stored_image_transform, conditioning=parts.conditioning,
        train_scheduler=parts.objective.scheduler, seed=opts.train.seed, guidance_scale=guidance,
        latent=parts.latent, use_ema=opts.train.use_ema, mixed_precision=opts.run.mixed_precision,
    )  # fmt: skip


def trains_cfg(opts: RunOptions) -> bool:
    """Does the run train classifier-free guidance (main_ldm: whenever captions are dropped)?"""
    return opts.model.classifier_free_guidance if opts.model is not None else opts.ldm.uncond_p > 0


def build_ddpm_strategy(opts: RunOptions, parts: RunParts):
    """The strategy (or `CombinedStrategy`) of main_ddpm's strategy flags."""
    return build_strategy(opts.strategies, strategy_context(opts, parts))
