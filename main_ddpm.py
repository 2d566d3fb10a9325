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

    opts = cli.ddpm_options(args)  # every flag, as validated typed configs
    set_seed(opts.train.seed)  # model initialisation; every later draw uses generators derived from the seed
    built = cli.build_ddpm(opts)
    test_tasks = cli.check_evaluation(opts, built)
    objective = opts.objective
    prediction_type = objective.resolved_prediction_type()  # unset: v for score models, ε for energy models
    scheduler = DDPMScheduler(
        num_train_timesteps=objective.ddpm_num_steps,
        beta_schedule=objective.ddpm_beta_schedule,
        prediction_type=prediction_type,
        rescale_betas_zero_snr=objective.rescale_betas_zero_snr,
    )
    strategy = cli.ddpm_strategy(opts, built, scheduler)
    loss = DenoisingObjective(
        scheduler, prediction_type, objective.snr_gamma, objective.noise_offset, objective.timestep_sampling
    )
    train(args, opts, built, strategy, loss, test_tasks)


def main(argv: list[str] | None = None) -> int:
    return run_main(cli.ddpm_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
