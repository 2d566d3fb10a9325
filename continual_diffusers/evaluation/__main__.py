"""Standalone evaluation tools.

    python -m continual_diffusers.evaluation train-oracle --data_path train.npz --test_data_path test.npz \
        --output_dir outputs/oracle
    python -m continual_diffusers.evaluation report --run_dir outputs/demo \
        [--data_path train.npz --test_data_path test.npz]
        # evaluates every task_<k>/ export on the tasks it had seen → run_dir/report/; the data paths default to
        # the ones run_dir/config.json recorded
"""

from __future__ import annotations

import os
import re
import sys

from ..config import SamplingConfig
from ..data import load_split_digits, load_task_file
from ..utils import bounds
from ..utils.entrypoint import new_parser, run_main
from ..utils.errors import UserInputError
from ..utils.logging import get_logger
from ..utils.options import add_options, from_args
from .oracle import check_oracle_inputs, get_oracle, load_test_tasks
from .run_data import check_report_inputs, report_data_paths

logger = get_logger("continual_diffusers.evaluation")


def parser():
    p = new_parser(
        "Oracle classifier training and continual-evaluation reports.", "python -m continual_diffusers.evaluation"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="train-oracle or report")
    oracle = sub.add_parser("train-oracle", help="train the oracle classifier on all tasks' training data")
    oracle.add_argument("--data_path", default=None, help="training task file (default: bundled digits)")
    oracle.add_argument("--test_data_path", default=None, help="test task file (default: bundled digits)")
    oracle.add_argument(
        "--resolution",
        type=bounds.RESOLUTION,
        default=None,
        help="side in pixels the oracle classifies at (images are resized); default: the training data's size",
    )
    oracle.add_argument("--output_dir", required=True, help="folder for the oracle (config.json, model.safetensors)")
    oracle.add_argument("--seed", type=bounds.SEED, default=0, help="seeds initialisation and data order")
    report = sub.add_parser("report", help="evaluate every task_<k>/ of a run and write run_dir/report/")
    report.add_argument("--run_dir", required=True, help="a main_ddpm output dir (with task_<k>/ exports)")
    report.add_argument(
        "--data_path",
        default=None,
        help="the run's training task file (oracle, memorisation measures); default: the one run_dir/config.json "
        "records (the bundled digits for a run on them)",
    )
    report.add_argument(
        "--test_data_path",
        default=None,
        help="real test images per task; default: the one run_dir/config.json records (the bundled digits' "
        "held-out split for a run on them)",
    )
    report.add_argument("--oracle_path", default=None, help="default: run_dir/oracle (trained if absent)")
    report.add_argument(
        "--eval_num_samples", type=bounds.EVAL_SAMPLES, default=100, help="generated images per task and evaluation"
    )
    report.add_argument("--seed", type=bounds.SEED, default=0, help="seeds the sampling noise (and a new oracle)")
    report.add_argument("--sampling_batch_size", type=bounds.BATCH_SIZE, default=64, help="images per sampling chunk")
    add_options(report, SamplingConfig)
    return p


def _tasks(path):
    return load_task_file(path, "--data_path") if path else load_split_digits()[0]


def train_oracle_cmd(args) -> None:
    from .classifier import save_oracle, train_oracle

    train = _tasks(args.data_path)
    test = load_task_file(args.test_data_path, "--test_data_path") if args.test_data_path else load_split_digits()[1]
    resolution = args.resolution or min(train.image_size)
    model, acc = train_oracle(train, test, resolution, seed=args.seed)
    save_oracle(model, args.output_dir, resolution, acc)
    print(f"oracle test accuracy {acc:.4f}; saved in {args.output_dir}")


def task_dirs(run_dir: str) -> list[tuple[int, str]]:
    found = [
        (int(m.group(1)), os.path.join(run_dir, n))
        for n in os.listdir(run_dir)
        if (m := re.fullmatch(r"task_(\d+)", n))
    ]
    if not found:
        raise UserInputError(f"{run_dir}: no task_<k>/ folders (is it a main_ddpm output dir?)")
    return sorted(found)


def check_exports(dirs: list[tuple[int, str]], args):
    """Every task_<k>/ loads (with all of `load_task_model`'s checks) and can be sampled with the sampler flags
    (guidance included), before the report of the first one is written: a broken task 3 is refused with nothing
    written. Returns the last export's (spec, conditioning)."""
    from ..pipelines.loading import load_task_model
    from ..sampling.generate import resolve_guidance
    from ..sampling.schedule_check import check_sampling_timesteps

    for _, path in dirs:
        _, conditioning, scheduler, spec = load_task_model(path, None, "cpu")
        if args.num_inference_steps > scheduler.config.num_train_timesteps:
            raise UserInputError(
                f"--num_inference_steps {args.num_inference_steps} exceeds the "
                f"{scheduler.config.num_train_timesteps} training timesteps of {path}/scheduler"
            )
        check_sampling_timesteps(args.scheduler, scheduler.config, args.num_inference_steps, f"{path}/scheduler")
        resolve_guidance(args.guidance_scale, spec.classifier_free_guidance, "--guidance_scale")
    return spec, conditioning


def report_cmd(args) -> str:
    import torch

    from ..pipelines.loading import load_task_model
    from ..sampling.generate import SamplerOptions, resolve_guidance
    from .evaluator import ContinualEvaluator
    from .task_eval import EndOfTaskEvaluation

    from_args(SamplingConfig, args)  # the sampler flags that must agree with each other
    dirs = task_dirs(args.run_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec, conditioning = check_exports(dirs, args)  # the flags against the models first: they need no data
    args.data_path, args.test_data_path = report_data_paths(args.run_dir, args.data_path, args.test_data_path)
    test = load_test_tasks(args.test_data_path, args.data_path)
    train = _tasks(args.data_path)
    check_report_inputs(spec, conditioning, train, test)
    check_oracle_inputs(train, test, args.oracle_path, args.run_dir)  # before an oracle is trained into run_dir
    # The memorisation measures compare samples with the run's training images: the bundled digits only stand in
    # for them when the test images are the bundled ones too.
    memorised = train if args.data_path or not args.test_data_path else None
    if memorised is None:
        logger.info("no --data_path: the memorisation measures (copy fraction, recall, ...) are left out")
    evaluation = None
    for task_id, path in dirs:
        model, conditioning, scheduler, spec = load_task_model(path, None, device)
        if evaluation is None:
            guidance = resolve_guidance(args.guidance_scale, spec.classifier_free_guidance, "--guidance_scale")
            oracle, oracle_config = get_oracle(args.oracle_path, args.seed, train, test, spec.resolution, args.run_dir)
            options = SamplerOptions(
                args.scheduler,
                args.num_inference_steps,
                guidance,
                args.sampling_batch_size,
                args.seed,
                eta=args.ddim_eta,
            )
            evaluator = ContinualEvaluator(
                oracle, oracle_config["resolution"], test, args.eval_num_samples, options, train_tasks=memorised
            )
            evaluation = EndOfTaskEvaluation(evaluator, conditioning, scheduler, spec.classes_per_task, args.run_dir)
        evaluation.conditioning, evaluation.train_scheduler = conditioning, scheduler
        seen = list(spec.seen_tasks)
        buffered = replayed_buffer(args.run_dir, seen[:-1]) if memorised is not None else None
        evaluation(model, task_id, seen, device, buffered)
        logger.info("evaluated %s", path)
    print(f"report: {os.path.join(evaluation.report_dir, 'report.md')}\n{evaluation.report.headline()}")
    return evaluation.report_dir


def replayed_buffer(run_dir: str, seen_before: list[int]):
    """The replay buffer a task trained with (buffer attraction), from the run's checkpoint taken after the tasks
    `seen_before` (`training.checkpoint.checkpoint_of_task`); None for a run without one or without checkpoints."""
    from ..strategies.replay import replayed_images_in_checkpoint
    from ..training.checkpoint import checkpoint_of_task, read_strategy_state

    path = checkpoint_of_task(run_dir, seen_before) if seen_before else None
    return replayed_images_in_checkpoint(read_strategy_state(path)[0]) if path else None


def main(argv: list[str] | None = None) -> int:
    commands = {"train-oracle": train_oracle_cmd, "report": report_cmd}
    return run_main(parser(), lambda args: commands[args.command](args), argv)


if __name__ == "__main__":
    sys.exit(main())
