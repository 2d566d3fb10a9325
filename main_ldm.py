#!/usr/bin/env python
"""Continual training of a latent diffusion model (frozen VAE + CLIP text encoder, trained UNet) over a sequence of
captioned tasks: the images are encoded to VAE latents and main_ddpm's trainer, strategies and samplers run
unchanged on them.

    python main_ldm.py --pretrained_model_name_or_path CompVis/stable-diffusion-v1-4 --data_path tasks.npz \
        --resolution 256 --validation_prompts "a photo of a cat" --cache_latents
    python main_ldm.py ... --unet_scratch --model_config_name_or_path configs/small_unet.json   # random small UNet
    python main_ldm.py ... --lora_rank 4                                  # one LoRA adapter per task
    accelerate launch --num_processes 2 main_ldm.py ...                   # multi-GPU (DDP)

Writes output_dir/config.json, output_dir/task_{k}/ (a StableDiffusionPipeline folder + samples.png; LoRA runs
also lora/task_<j>/pytorch_lora_weights.safetensors), output_dir/checkpoint-{step}/ and tensorboard logs.
"""

from __future__ import annotations

import json
import os
import sys

from continual_diffusers import cli
from continual_diffusers.cli import ldm as ldm_cli
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger, setup_cli_logging

logger = get_logger("main_ldm")


def run(args) -> None:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    from continual_diffusers.objectives import DenoisingObjective
    from continual_diffusers.training.checkpoint import resolve_resume
    from continual_diffusers.training.trainer import ContinualTrainer

    set_seed(args.seed)  # UNet (scratch) and LoRA initialisation; every later draw uses seeded generators
    built = ldm_cli.build_ldm(args)
    cfg = ldm_cli.ldm_train_config(args)
    cli.check_evaluation(args, built)
    strategy = ldm_cli.build_ldm_strategy(args, built)
    resolved = {"args": vars(args), "train_config": cfg.to_dict(), "model": built["metadata"]}
    if args.dry_run:
        print(json.dumps(resolved, indent=2, default=str))
        return
    resume = resolve_resume(args.output_dir, args.resume_from_checkpoint)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.logger == "none" else args.logger,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
        ),
    )
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "config.json"), "w") as fh:
            json.dump(resolved, fh, indent=2, default=str)
    accelerator.init_trackers(args.project_name, config=cli.tracker_config(cfg))
    components = built["components"]
    components.vae.to(accelerator.device)
    components.text_encoder.to(accelerator.device)
    objective = DenoisingObjective(components.scheduler, components.scheduler.config.prediction_type, args.snr_gamma)
    trainer = ContinualTrainer(
        accelerator,
        built["denoiser"].to(accelerator.device),
        built["conditioning"],
        objective,
        strategy,
        cfg,
        built["make_dataset"],
        built["metadata"],
        built["text"],
        decode_fn=built["codec"].decode,
        vae=components.vae,
    )
    tasks = built["tasks"]
    logger.info("training %d tasks %s; output in %s", len(tasks), tasks.task_ids, args.output_dir)
    trainer.fit(tasks, resume)


def main(argv: list[str] | None = None) -> int:
    args = ldm_cli.ldm_parser().parse_args(argv)
    setup_cli_logging()
    try:
        run(args)
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
