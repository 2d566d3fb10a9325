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

from continual_diffusers.cli import ldm as ldm_cli
from continual_diffusers.cli.evaluation import check_evaluation
from continual_diffusers.cli.launch import train
from continual_diffusers.utils.entrypoint import exit_process, run_main


def run(args) -> None:
    from accelerate.utils import set_seed

    opts = ldm_cli.ldm_options(args)  # every flag, as validated typed configs
    set_seed(opts.train.seed)  # UNet (scratch) and LoRA initialisation; every later draw uses seeded generators
    parts = ldm_cli.build_ldm(opts)  # tasks, conditioning, denoiser, objective, latent datasets, VAE, model spec
    test_tasks = check_evaluation(opts, parts)
    strategy = ldm_cli.build_ldm_strategy(opts, parts)
    train(args, opts, parts, strategy, test_tasks)


def main(argv: list[str] | None = None) -> int:
    return run_main(ldm_cli.ldm_parser(), run, argv)


if __name__ == "__main__":
    exit_process(main())
