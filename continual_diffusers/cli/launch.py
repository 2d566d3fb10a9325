"""What both training entry points do after building (and validating) everything: dry run, or accelerator,
config.json, trackers, end-of-task evaluation and the continual trainer, then the optional Hub upload."""

from __future__ import annotations

import argparse
import json
import os

from ..utils.logging import get_logger
from .base import RunOptions, RunParts

logger = get_logger(__name__)


def train(args: argparse.Namespace, opts: RunOptions, parts: RunParts, strategy, test_tasks=None) -> None:
    """Dry run, or: accelerator, trainer (restored from the checkpoint), oracle check, config.json, trackers,
    optional end-of-task evaluation, then `ContinualTrainer.fit`. Nothing is written before every check passed.

    `args`: the parsed flags (recorded); `opts`: the run's typed configuration built from them; `parts`: what the
    entry point built from it (`RunParts`); `test_tasks`: the evaluation's (`cli.evaluation.check_evaluation`)."""
    from ..evaluation.oracle import existing_oracle
    from ..models.denoiser import denoiser_state_dict
    from ..training.branch import carry_exports, exports_to_carry
    from ..training.build import make_accelerator, tracker_config
    from ..training.checkpoint import check_compatible, resolve_resume
    from ..training.trainer import ContinualTrainer
    from ..training.validation import validation_options
    from ..utils import tuned_for_training
    from ..utils.files import check_writable
    from .evaluation import build_end_of_task_eval

    # config.json: "args", the flag values (`--config` reads them back; not --config itself, whose values are
    # already in) and the ones the run derived; "config", the resolved typed configuration; "model", the spec.
    cfg, run = opts.train, opts.run
    flags = {**{k: v for k, v in vars(args).items() if k != "config"}, **opts.derived}
    resolved = {"args": flags, "config": opts.resolved(), "model": parts.spec.to_json()}
    if run.dry_run:
        print(json.dumps(resolved, indent=2, default=str))
        return
    # Everything that can be refused is checked before the first write: the flags and the data (already), the
    # checkpoint, the oracle, then the output dir.
    resume = resolve_resume(run.output_dir, run.resume_from_checkpoint)
    carried = []
    if resume is not None:  # the safetensors header first: another architecture or strategy is named as such
        check_compatible(resume, denoiser_state_dict(parts.denoiser), strategy.name)
    log_with = None if run.logger == "none" else run.logger
    accelerator = make_accelerator(cfg, run.mixed_precision, log_with, run.logging_dir)
    trainer = ContinualTrainer(
        accelerator, parts.denoiser.to(accelerator.device), parts.conditioning, parts.objective, strategy, cfg,
        parts.make_dataset, parts.spec, decode_fn=parts.decode_fn, vae=parts.vae,
    )  # fmt: skip
    if resume is not None:
        trainer.restore(resume, parts.tasks)  # its state checked against this run first
        carried = exports_to_carry(resume, run.output_dir)  # another run's checkpoint: its finished tasks' exports
    evaluation = opts.evaluation
    oracle = existing_oracle(evaluation.oracle_path, test_tasks, run.output_dir) if test_tasks is not None else None
    if accelerator.is_main_process:
        check_writable(run.output_dir)  # one clear error instead of a traceback from the first write
        with open(os.path.join(run.output_dir, "config.json"), "w") as fh:
            json.dump(resolved, fh, indent=2, default=str)
        carry_exports(carried)
    accelerator.init_trackers(run.project_name, config=tracker_config(cfg))
    parts.conditioning.to(accelerator.device)  # a text encoder, kept out of the denoiser
    if parts.vae is not None:  # latent models: the frozen VAE decodes samples on the device
        parts.vae.to(accelerator.device)
    with accelerator.main_process_first():  # the oracle is trained once, by the main process
        task_eval = build_end_of_task_eval(opts, parts, test_tasks, validation_options(cfg), oracle)
    trainer.attach_evaluation(task_eval)
    order = class_order_echo(parts.spec)  # the task file's class order, echoed in the report
    if task_eval is not None and order:
        task_eval.report.data = order
    tasks = parts.tasks
    logger.info("training %d tasks %s; output in %s", len(tasks), tasks.task_ids, run.output_dir)
    with tuned_for_training() as tuning:  # last: the objects alive now are what it freezes out of gc scans
        logger.info("process: malloc %s; %d objects frozen out of garbage collection", tuning.malloc,
                    tuning.frozen_objects)  # fmt: skip
        trainer.fit(tasks)
    if task_eval is not None and accelerator.is_main_process:
        print(f"report: {os.path.join(task_eval.report_dir, 'report.md')}\n{task_eval.report.headline()}")
    if opts.hub.push_to_hub and accelerator.is_main_process:
        from ..training.hub import push_to_hub

        push_to_hub(run.output_dir, opts.hub.repo_id(run.output_dir), private=opts.hub.hub_private_repo or None)


def class_order_echo(spec) -> dict:
    """{"class_order": [...], "class_names": [...]} as recorded in the task file ({} if it records none)."""
    if spec.class_order is None:
        return {}
    names = spec.class_names
    return {"class_order": list(spec.class_order), **({"class_names": list(names)} if names is not None else {})}
