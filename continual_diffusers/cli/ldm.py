"""main_ldm's parser (generated from the typed configs) and the configs → objects conversion.

main_ldm shares every other group with main_ddpm (data, objective, strategy, training, sampling, evaluation): the
LDM is "encode to latents, then the same machinery". The noise schedule and prediction type come from the
pretrained scheduler config, so the DDPM schedule flags are refused here.
"""

from __future__ import annotations

import argparse
import dataclasses

from ..config import (
    DataConfig,
    EvaluationConfig,
    HubConfig,
    LaunchConfig,
    LDMConfig,
    ObjectiveConfig,
    SamplingConfig,
    check_zero_snr_prediction,
)
from ..data import ImageTransform, TaskDataset, TaskSequence, load_task_file
from ..models.conditioning import TextConditioning
from ..models.denoiser import make_denoiser
from ..models.latent import LatentCodec, LatentTaskDataset
from ..models.spec import LatentSpec, ModelSpec
from ..objectives import DenoisingObjective
from ..pipelines.sd_components import LatentComponents, load_sd_components
from ..strategies import ContinualStrategy, LoRAConfig
from ..training.train_config import TrainConfig
from ..utils.errors import UserInputError
from ..utils.options import add_options, from_args, help_of
from .base import RunOptions, RunParts, build_parser, run_options
from .strategy import add_strategy_args, build_strategy
from .training import strategy_context, training_resolution

# The shared objective flags, as they apply here: the schedule comes from <pretrained_model_name_or_path>/scheduler.
NOT_HERE = "does not apply: the noise schedule comes from <pretrained_model_name_or_path>/scheduler"
OBJECTIVE_HELP = {
    "ddpm_num_steps": NOT_HERE,
    "ddpm_beta_schedule": NOT_HERE,
    "prediction_type": help_of(ObjectiveConfig, "prediction_type")
    + "; default: the pretrained scheduler's (epsilon with --energy_based_training)",
}
# Recorded in config.json "args" although not flags here, so --config skips them: classifier_free_guidance is
# derived from --uncond_p; num_class_labels is in the config.json files of earlier versions.
DERIVED = {"classifier_free_guidance": False, "num_class_labels": None}


def _ldm_groups(parser: argparse.ArgumentParser) -> None:
    add_options(parser, DataConfig)
    add_options(parser, LDMConfig)
    add_options(parser, LoRAConfig)
    add_options(parser, ObjectiveConfig, {"ddpm_num_steps": None, "ddpm_beta_schedule": None}, OBJECTIVE_HELP)
    add_strategy_args(parser)
    add_options(parser, TrainConfig)
    add_options(parser, LaunchConfig, {"output_dir": "outputs/ldm"})
    parser.set_defaults(**DERIVED)


def ldm_parser() -> argparse.ArgumentParser:
    return build_parser(
        "Continual training of a latent diffusion model (VAE + CLIP text encoder + UNet).",
        _ldm_groups, HubConfig, SamplingConfig, EvaluationConfig,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ configs → objects
def ldm_options(args: argparse.Namespace) -> RunOptions:
    """main_ldm's typed configuration, validated; an energy model's prediction type (ε, the only one it defines)
    and CFG training (from --uncond_p) are derived, and recorded in config.json's "args"."""
    objective = from_args(ObjectiveConfig, args)
    if objective.ddpm_num_steps is not None or objective.ddpm_beta_schedule is not None:
        raise UserInputError(
            "--ddpm_num_steps / --ddpm_beta_schedule do not apply: the LDM's noise schedule comes "
            "from <pretrained_model_name_or_path>/scheduler"
        )
    if objective.prediction_type == "sample":
        raise UserInputError("latent diffusion supports --prediction_type epsilon or v_prediction")
    ldm = from_args(LDMConfig, args)
    if args.data_path is None:
        raise UserInputError("latent diffusion needs --data_path: a task file with captions")
    lora = from_args(LoRAConfig, args)
    if objective.energy_based_training and ldm.gradient_checkpointing:
        raise UserInputError(
            "--gradient_checkpointing is not supported with --energy_based_training (the double "
            "backward through checkpointed blocks is untested): drop one of them"
        )
    if objective.energy_based_training and objective.prediction_type is None:
        objective = dataclasses.replace(objective, prediction_type="epsilon")
    derived = {"classifier_free_guidance": ldm.uncond_p > 0, "prediction_type": objective.prediction_type}
    return run_options(args, objective=objective, ldm=ldm, lora=lora, derived=derived)


def _load_tasks(opts: RunOptions) -> TaskSequence:
    path = opts.data.data_path
    tasks = load_task_file(path, "--data_path")
    if tasks.label_kind != "text":
        raise UserInputError(f"latent diffusion needs caption labels, but the task file has {tasks.label_kind}")
    if not opts.sampling.validation_prompts:
        raise UserInputError("latent diffusion needs --validation_prompts for the end-of-task samples")
    return tasks


def _components(opts: RunOptions, resolution: int) -> tuple[LatentComponents, LatentCodec]:
    ldm, objective = opts.ldm, opts.objective
    c = load_sd_components(
        ldm.pretrained_model_name_or_path, ldm.revision, ldm.variant, objective.prediction_type, ldm.unet_scratch,
        ldm.model_config_name_or_path, objective.rescale_betas_zero_snr,
    )  # fmt: skip
    prediction_type = c.scheduler.config.prediction_type
    if objective.rescale_betas_zero_snr:
        check_zero_snr_prediction(prediction_type)
    codec = LatentCodec(c.vae)
    if resolution % codec.downsample:
        raise UserInputError(f"--resolution {resolution} is not divisible by the VAE's factor {codec.downsample}")
    if prediction_type not in ("epsilon", "v_prediction"):
        raise UserInputError(f"the scheduler's prediction_type {prediction_type!r} is unsupported")
    if objective.energy_based_training and prediction_type != "epsilon":
        raise UserInputError("--energy_based_training defines ε̂ = ∇ₓE: pass --prediction_type epsilon")
    scheduler_path = f"{ldm.pretrained_model_name_or_path}/scheduler"
    opts.sampling.check_schedule(c.scheduler.config, scheduler_path)
    # Samplers and exported pipelines read the latent size from the UNet config: make it the training one.
    c.unet.register_to_config(sample_size=resolution // codec.downsample)
    if ldm.gradient_checkpointing:
        c.unet.enable_gradient_checkpointing()
    return c, codec


def build_ldm(opts: RunOptions) -> RunParts:
    """Everything main_ldm needs, validated: tasks, conditioning, denoiser, objective, latent datasets, codec and
    components, model spec."""
    tasks = _load_tasks(opts)
    resolution = training_resolution(opts.data, tasks)
    if tasks.num_channels != 3:
        raise UserInputError(f"the VAE encodes RGB images, but the task file has {tasks.num_channels} channel(s)")
    c, codec = _components(opts, resolution)
    transform = ImageTransform(resolution, center_crop=opts.data.center_crop, random_flip=opts.data.random_flip)
    denoiser = make_denoiser(c.unet, opts.objective.energy_type)
    conditioning = TextConditioning(c.tokenizer, c.text_encoder)
    ldm = opts.ldm
    latent = LatentSpec(codec.downsample, codec.scaling_factor, codec.shift_factor, c.vae.config.latent_channels)
    spec = ModelSpec.for_run(
        tasks, conditioning, energy_type=opts.objective.energy_type,
        prediction_type=c.scheduler.config.prediction_type,
        classifier_free_guidance=ldm.uncond_p > 0 or not ldm.unet_scratch, resolution=resolution,
        validation_prompts=opts.sampling.validation_prompts, data_path=opts.data.data_path, latent=latent,
        base_model=ldm.pretrained_model_name_or_path,
        lora=opts.lora.export_metadata() if opts.lora.lora_rank else None,
    )  # fmt: skip
    objective = opts.objective
    loss = DenoisingObjective(
        c.scheduler, c.scheduler.config.prediction_type, objective.snr_gamma, objective.noise_offset,
        objective.timestep_sampling,
    )  # fmt: skip
    return RunParts(
        tasks, conditioning, denoiser, loss, spec, transform,
        lambda task: LatentTaskDataset(TaskDataset(task, transform), codec, ldm.cache_latents), codec, c,
    )  # fmt: skip


def build_ldm_strategy(opts: RunOptions, parts: RunParts) -> ContinualStrategy:
    """The shared strategy flags' strategy (replay encodes its stored images to latents: the context's
    `stored_image_transform`), plus the per-task LoRA adapters when --lora_rank > 0 (injected into the UNet here,
    before the trainer sees it)."""
    context = strategy_context(opts, parts)
    lora = [opts.lora.build(context)] if opts.lora.lora_rank else []
    return build_strategy(opts.strategies, context, first=lora)
