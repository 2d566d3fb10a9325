#!/usr/bin/env python
"""Continual training of a pixel-space DDPM UNet over a sequence of tasks.

    python main_ddpm.py                                   # class-conditional DDPM on the bundled split digits
    python main_ddpm.py --data_path data/cifar10_tasks_train.npz --resolution 32 --classifier_free_guidance
    accelerate launch --num_processes 2 main_ddpm.py ...  # multi-GPU (DDP)

Writes output_dir/config.json, output_dir/task_{k}/ (diffusers-format model + samples.png per task),
output_dir/checkpoint-{step}/ (resume with --resume_from_checkpoint latest) and tensorboard logs.
"""

from __future__ import annotations

import sys

from continual_diffusers import cli
from continual_diffusers.cli.launch import train
from continual_diffusers.utils.entrypoint import run_main


def run(args) -> None:
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler

    from continual_diffusers.objectives import DenoisingObjective

    cfg = cli.train_config(args)
    set_seed(args.seed)  # model initialisation; every later draw uses generators derived from the seed
    built = cli.build_ddpm(args)
    test_tasks = cli.check_evaluation(args, built)
    prediction_type = cli.prediction_type(args)  # unset: v for score models, ε for energy models
    scheduler = DDPMScheduler(
        num_train_timesteps=args.ddpm_num_steps,
        beta_schedule=args.ddpm_beta_schedule,
        prediction_type=prediction_type,
        rescale_betas_zero_snr=args.rescale_betas_zero_snr,
    )
    strategy = cli.build_strategy(args, built["tasks"], built["conditioning"], scheduler)
    objective = DenoisingObjective(
        scheduler, prediction_type, args.snr_gamma, args.noise_offset, args.timestep_sampling
    )
    train(args, cfg, built, strategy, objective, test_tasks)


def main(argv: list[str] | None = None) -> int:
    return run_main(cli.ddpm_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
