#!/usr/bin/env python
"""Continual training of a pixel-space DDPM UNet over a sequence of tasks.

    python main_ddpm.py                                   # class-conditional DDPM on the bundled split digits
    python main_ddpm.py --data_path data/cifar10_tasks_train.npz --resolution 32 --classifier_free_guidance
    accelerate launch --num_processes 2 main_ddpm.py ...  # multi-GPU (DDP)

Writes output_dir/config.json, output_dir/task_{k}/ (diffusers-format model + samples.png per task),
output_dir/checkpoint-{step}/ (resume with --resume_from_checkpoint latest) and tensorboard logs.
"""

from __future__ import annotations

from continual_diffusers import cli
from continual_diffusers.cli.launch import train
from continual_diffusers.utils.entrypoint import exit_process, run_main


def run(args) -> None:
    from accelerate.utils import set_seed

    opts = cli.ddpm_options(args)  # every flag, as validated typed configs
    set_seed(opts.train.seed)  # model initialisation; every later draw uses generators derived from the seed
    parts = cli.build_ddpm(opts)  # tasks, conditioning, denoiser, objective, datasets, model spec
    test_tasks = cli.check_evaluation(opts, parts)
    strategy = cli.build_ddpm_strategy(opts, parts)
    train(args, opts, parts, strategy, test_tasks)


def main(argv: list[str] | None = None) -> int:
    return run_main(cli.ddpm_parser(), run, argv)


if __name__ == "__main__":
    exit_process(main())
