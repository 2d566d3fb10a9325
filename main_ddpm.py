#!/usr/bin/env python
"""Continual training of a pixel-space DDPM UNet over a sequence of tasks.

    python main_ddpm.py                                   # class-conditional DDPM on the bundled split digits
    python main_ddpm.py --data_path data/cifar10_tasks_train.npz --resolution 32 --classifier_free_guidance
    accelerate launch --num_processes 2 main_ddpm.py ...  # multi-GPU (DDP)

Writes output_dir/config.json, output_dir/task_{k}/ (diffusers-format model + samples.png per task),
output_dir/checkpoint-{step}/ (resume with --resume_from_checkpoint latest) and tensorboard logs.
"""

from __future__ import annotations

import json
import os
import sys

from continual_diffusers import cli
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger, setup_cli_logging

logger = get_logger("main_ddpm")


def run(args) -> None:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers import DDPMScheduler

    from continual_diffusers.objectives import DenoisingObjective
    from continual_diffusers.training.checkpoint import resolve_resume
    from continual_diffusers.training.trainer import ContinualTrainer
    from continual_diffusers.training.validation import validation_options

    cfg = cli.train_config(args)
    set_seed(args.seed)  # model initialisation; every later draw uses generators derived from the seed
    built = cli.build_ddpm(args)
    test_tasks = cli.check_evaluation(args, built)
    scheduler = DDPMScheduler(
        num_train_timesteps=args.ddpm_num_steps,
        beta_schedule=args.ddpm_beta_schedule,
        prediction_type=args.prediction_type,
    )
    strategy = cli.build_strategy(args, built["tasks"], built["conditioning"], scheduler)
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
    if built["text"] is not None:
        built["text"][1].to(accelerator.device)
    objective = DenoisingObjective(scheduler, args.prediction_type, args.snr_gamma)
    with accelerator.main_process_first():  # the oracle is trained once, by the main process
        task_eval = cli.build_end_of_task_eval(args, built, test_tasks, scheduler, validation_options(cfg))
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
        task_eval,
    )
    logger.info("training %d tasks %s; output in %s", len(built["tasks"]), built["tasks"].task_ids, args.output_dir)
    trainer.fit(built["tasks"], resume)
    if task_eval is not None and accelerator.is_main_process:
        print(f"report: {os.path.join(task_eval.report_dir, 'report.md')}\n{task_eval.report.headline()}")


def main(argv: list[str] | None = None) -> int:
    args = cli.ddpm_parser().parse_args(argv)
    setup_cli_logging()
    try:
        run(args)
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
