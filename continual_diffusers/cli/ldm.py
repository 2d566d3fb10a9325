"""Latent-diffusion flags (the LDM model group) and the Namespace → objects conversion for main_ldm.

main_ldm shares every other group with main_ddpm (data, objective, strategy, training, sampling, evaluation): the
LDM is "encode to latents, then the same machinery". The noise schedule and prediction type come from the
pretrained scheduler config, so the DDPM schedule flags are refused here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from ..data import ImageTransform, TaskDataset, TaskSequence, load_tasks
from ..models.conditioning import TextConditioning
from ..models.denoiser import make_denoiser
from ..models.latent import LatentCodec, LatentComponents, LatentTaskDataset, LatentTransform, load_sd_components
from ..strategies import CombinedStrategy, ContinualStrategy, Naive, Replay
from ..strategies.lora import DEFAULT_TARGETS, LoRAAdapters
from ..training.build import export_metadata
from ..training.config import TrainConfig
from ..utils import bounds as b
from ..utils.errors import UserInputError
from .base import add_config_arg, new_parser
from .evaluation import add_evaluation_args
from .sampling import add_sampler_args, check_inference_steps
from .strategy import add_strategy_args, build_strategy
from .training import (
    add_data_args,
    add_objective_args,
    add_training_args,
    check_ranges,
    check_zero_snr_prediction,
    train_config,
)


def add_ldm_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Latent diffusion model", "Stable-Diffusion components, caption dropout, LoRA")
    g.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help="hub id or local dir in the diffusers SD layout (vae/ text_encoder/ tokenizer/ scheduler/ unet/)",
    )
    g.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) of the pretrained model")
    g.add_argument("--variant", default=None, help='weights variant, e.g. "fp16"')
    g.add_argument("--unet_scratch", action="store_true", help="random-init UNet from the repo's unet config")
    g.add_argument(
        "--model_config_name_or_path", default=None, help="with --unet_scratch: a (smaller) UNet config.json"
    )
    g.add_argument("--cache_latents", action="store_true", help="run the VAE once per image and task, not per step")
    g.add_argument(
        "--uncond_p", type=b.PROBABILITY, default=0.1, help="caption dropout to the empty prompt (CFG); 0: off"
    )
    g.add_argument("--gradient_checkpointing", action="store_true", help="UNet activation checkpointing")
    g = parser.add_argument_group("LoRA", "one peft adapter per task on the frozen UNet (a continual strategy)")
    g.add_argument("--lora_rank", type=b.LORA_RANK, default=0, help="LoRA rank r; 0 = full fine-tuning")
    g.add_argument("--lora_alpha", type=b.POSITIVE, default=None, help="LoRA α (scale α/r); default α = r")
    g.add_argument("--lora_target_modules", nargs="+", default=list(DEFAULT_TARGETS), help="module-name suffixes")
    g.add_argument(
        "--lora_mode",
        choices=["stacked", "isolated"],
        default="stacked",
        help="stacked: task k trains adapter k on top of the frozen adapters 1..k-1; isolated: adapter k alone",
    )


def ldm_parser() -> argparse.ArgumentParser:
    parser = new_parser("Continual training of a latent diffusion model (VAE + CLIP text encoder + UNet).")
    for add in (add_data_args, add_ldm_model_args, add_objective_args, add_strategy_args, add_training_args):
        add(parser)
    add_sampler_args(parser)
    add_evaluation_args(parser)
    # From the pretrained scheduler config unless given; the DDPM schedule flags do not apply.
    parser.set_defaults(
        prediction_type=None,
        ddpm_num_steps=None,
        ddpm_beta_schedule=None,
        output_dir="outputs/ldm",
        num_class_labels=None,
        # Not a flag here: derived from --uncond_p (_check_ldm_flags), so config.json records it and --config
        # skips it (utils.entrypoint.ConfigFileAction).
        classifier_free_guidance=False,
    )
    for action in parser._actions:  # the shared objective flags, as they apply here
        if action.dest in ("ddpm_num_steps", "ddpm_beta_schedule"):
            action.help = "does not apply: the noise schedule comes from <pretrained_model_name_or_path>/scheduler"
        elif action.dest == "prediction_type":
            action.help += "; default: the pretrained scheduler's (epsilon with --energy_based_training)"
    add_config_arg(parser)
    return parser


# ------------------------------------------------------------------------------------------ Namespace → objects
def _check_ldm_flags(args: argparse.Namespace) -> None:
    if args.ddpm_num_steps is not None or args.ddpm_beta_schedule is not None:
        raise UserInputError(
            "--ddpm_num_steps / --ddpm_beta_schedule do not apply: the LDM's noise schedule comes "
            "from <pretrained_model_name_or_path>/scheduler"
        )
    if args.prediction_type == "sample":
        raise UserInputError("latent diffusion supports --prediction_type epsilon or v_prediction")
    if args.data_path is None:
        raise UserInputError("latent diffusion needs --data_path: a task file with captions")
    if args.lora_rank == 0 and args.lora_alpha is not None:
        raise UserInputError("--lora_alpha is set but LoRA is off (set --lora_rank)")
    if args.energy_based_training and args.gradient_checkpointing:
        raise UserInputError(
            "--gradient_checkpointing is not supported with --energy_based_training (the double "
            "backward through checkpointed blocks is untested): drop one of them"
        )
    if args.energy_based_training and args.prediction_type is None:
        args.prediction_type = "epsilon"  # the only type an energy model defines; recorded in config.json
    args.classifier_free_guidance = args.uncond_p > 0  # read by the shared range checks and train_config
    check_ranges(args)


def _load_tasks(args: argparse.Namespace) -> TaskSequence:
    if not os.path.exists(args.data_path):
        raise UserInputError(f"--data_path {args.data_path}: no such task file or task folder")
    tasks = load_tasks(args.data_path)
    if tasks.label_kind != "text":
        raise UserInputError(f"latent diffusion needs caption labels, but the task file has {tasks.label_kind}")
    if not args.validation_prompts:
        raise UserInputError("latent diffusion needs --validation_prompts for the end-of-task samples")
    return tasks


def _check_scratch_config(args: argparse.Namespace) -> None:
    """--unet_scratch --model_config_name_or_path: the config is checked before diffusers builds it."""
    from diffusers import UNet2DConditionModel

    from ..models.loading import read_json_object
    from ..models.unet import CONFIG_SIZES, check_model_config

    path = args.model_config_name_or_path
    file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    config = read_json_object(file)
    check_model_config(UNet2DConditionModel, config, f"--model_config_name_or_path {file}", CONFIG_SIZES)


def _components(args: argparse.Namespace, resolution: int) -> tuple[LatentComponents, LatentCodec]:
    if args.unet_scratch and args.model_config_name_or_path:
        _check_scratch_config(args)
    c = load_sd_components(
        args.pretrained_model_name_or_path,
        args.revision,
        args.variant,
        args.prediction_type,
        args.unet_scratch,
        args.model_config_name_or_path,
        args.rescale_betas_zero_snr,
    )
    if args.rescale_betas_zero_snr:
        check_zero_snr_prediction(c.scheduler.config.prediction_type)
    codec = LatentCodec(c.vae)
    if resolution % codec.downsample:
        raise UserInputError(f"--resolution {resolution} is not divisible by the VAE's factor {codec.downsample}")
    if c.scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
        raise UserInputError(f"the scheduler's prediction_type {c.scheduler.config.prediction_type!r} is unsupported")
    if args.energy_based_training and c.scheduler.config.prediction_type != "epsilon":
        raise UserInputError("--energy_based_training defines ε̂ = ∇ₓE: pass --prediction_type epsilon")
    check_inference_steps(
        args, c.scheduler.config.num_train_timesteps, f"{args.pretrained_model_name_or_path}/scheduler"
    )
    # Samplers and exported pipelines read the latent size from the UNet config: make it the training one.
    c.unet.register_to_config(sample_size=resolution // codec.downsample)
    if args.gradient_checkpointing:
        c.unet.enable_gradient_checkpointing()
    return c, codec


def build_ldm(args: argparse.Namespace) -> dict:
    """Everything main_ldm needs, validated: tasks, conditioning, denoiser, latent datasets, codec, metadata."""
    _check_ldm_flags(args)
    tasks = _load_tasks(args)
    resolution = args.resolution or min(tasks.image_size)
    if tasks.num_channels != 3:
        raise UserInputError(f"the VAE encodes RGB images, but the task file has {tasks.num_channels} channel(s)")
    c, codec = _components(args, resolution)
    transform = ImageTransform(resolution, center_crop=args.center_crop, random_flip=args.random_flip)
    energy = args.energy_score_type if args.energy_based_training else None
    denoiser = make_denoiser(c.unet, energy)
    conditioning = TextConditioning(c.tokenizer, c.text_encoder)
    metadata = export_metadata(
        tasks, denoiser, conditioning, prediction_type=c.scheduler.config.prediction_type,
        classifier_free_guidance=args.uncond_p > 0 or not args.unet_scratch, resolution=resolution,
        validation_prompts=args.validation_prompts, data_path=args.data_path,
        latent={
            "scaling_factor": codec.scaling_factor,
            "shift_factor": codec.shift_factor,
            "downsample": codec.downsample,
            "latent_channels": c.vae.config.latent_channels,
        },
        base_model=args.pretrained_model_name_or_path,
    )  # fmt: skip
    if args.lora_rank:
        metadata["lora"] = {
            "rank": args.lora_rank,
            "alpha": args.lora_alpha or float(args.lora_rank),
            "target_modules": list(args.lora_target_modules),
            "mode": args.lora_mode,
        }
    return {
        "tasks": tasks,
        "components": c,
        "codec": codec,
        "conditioning": conditioning,
        "text": (c.tokenizer, c.text_encoder),
        "denoiser": denoiser,
        "make_dataset": lambda task: LatentTaskDataset(TaskDataset(task, transform), codec, args.cache_latents),
        "metadata": metadata,
    }


def ldm_train_config(args: argparse.Namespace) -> TrainConfig:
    return dataclasses.replace(train_config(args), uncond_p=args.uncond_p)


def build_ldm_strategy(args: argparse.Namespace, built: dict) -> ContinualStrategy:
    """The shared strategy flags' strategy, with replay encoding its stored images to latents, plus the per-task
    LoRA adapters when --lora_rank > 0 (injected into the UNet here, before the trainer sees it)."""
    scheduler = built["components"].scheduler
    strategy = build_strategy(args, built["tasks"], built["conditioning"], scheduler, latent=True)
    parts = strategy.strategies if isinstance(strategy, CombinedStrategy) else [strategy]
    for part in parts:
        if isinstance(part, Replay):  # the buffer keeps uint8 pixels; the model trains on latents
            part.transform = LatentTransform(part.transform, built["codec"])
    if not args.lora_rank:
        return strategy
    try:
        lora = LoRAAdapters(
            built["denoiser"].unet,
            built["tasks"].task_ids,
            args.lora_rank,
            args.lora_alpha,
            tuple(args.lora_target_modules),
            args.lora_mode,
        )
    except ValueError as err:  # peft: none of the target modules exists in this UNet
        raise UserInputError(f"--lora_target_modules {args.lora_target_modules}: {err}".splitlines()[0]) from err
    others = [p for p in parts if not isinstance(p, Naive)]
    return CombinedStrategy([lora, *others]) if others else lora
