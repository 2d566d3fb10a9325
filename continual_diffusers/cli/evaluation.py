"""Evaluation flags (oracle, test data, end-of-task metrics) and their conversion."""

from __future__ import annotations

import argparse
import os

from ..data import TaskSequence, load_split_digits, load_tasks
from ..utils.errors import UserInputError
from ..utils.logging import get_logger

logger = get_logger(__name__)


def add_evaluation_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Evaluation", "per-task metrics with an oracle classifier (class-labelled data)")
    g.add_argument(
        "--eval_every_task",
        action="store_true",
        help="after each task, score every seen task and write output_dir/report/",
    )
    g.add_argument("--eval_num_samples", type=int, default=100, help="generated images per task and evaluation")
    g.add_argument(
        "--test_data_path",
        default=None,
        help="real test images per task (default with the bundled digits: their held-out split)",
    )
    g.add_argument(
        "--oracle_path",
        default=None,
        help="trained oracle folder; default: output_dir/oracle, trained on the training data if absent",
    )


def load_test_tasks(args: argparse.Namespace) -> TaskSequence:
    if args.test_data_path:
        if not os.path.isfile(args.test_data_path):
            raise UserInputError(f"--test_data_path {args.test_data_path}: no such file")
        return load_tasks(args.test_data_path)
    if getattr(args, "data_path", None) is None:
        return load_split_digits()[1]
    raise UserInputError("--eval_every_task needs --test_data_path (real test images of each task)")


def get_oracle(args: argparse.Namespace, train: TaskSequence, test: TaskSequence, resolution: int, output_dir: str):
    """(oracle, its config): load --oracle_path, or output_dir/oracle, or train one there."""
    from ..evaluation.classifier import load_oracle, save_oracle, train_oracle

    path = args.oracle_path or os.path.join(output_dir, "oracle")
    if args.oracle_path or os.path.isfile(os.path.join(path, "config.json")):
        return load_oracle(path)
    logger.info("training the oracle classifier on all tasks' training data (once per output dir)")
    model, acc = train_oracle(train, test, resolution, seed=args.seed)
    logger.info("oracle test accuracy %.4f, saved in %s", acc, path)
    save_oracle(model, path, resolution, acc)
    return load_oracle(path)


def check_evaluation(args: argparse.Namespace, built: dict) -> TaskSequence | None:
    """Validate the evaluation flags before anything is written; returns the test tasks (None: no evaluation)."""
    if not args.eval_every_task:
        return None
    if args.eval_num_samples < 2:
        raise UserInputError(f"--eval_num_samples must be >= 2, got {args.eval_num_samples}")
    if built["conditioning"].kind == "text":
        raise UserInputError("--eval_every_task needs class labels; text-conditioned runs get sample grids only")
    test = load_test_tasks(args)
    missing = sorted(set(built["tasks"].task_ids) - set(test.task_ids))
    if missing:
        raise UserInputError(f"--test_data_path has no test images for task(s) {missing}")
    return test


def build_end_of_task_eval(args: argparse.Namespace, built: dict, test: TaskSequence | None, train_scheduler, options):
    """The trainer's end-of-task evaluation callback (trains the oracle if needed), or None."""
    if test is None:
        return None
    from ..evaluation.evaluator import ContinualEvaluator
    from ..evaluation.task_eval import EndOfTaskEvaluation

    oracle, meta = get_oracle(args, built["tasks"], test, built["metadata"]["resolution"], args.output_dir)
    evaluator = ContinualEvaluator(oracle, meta["resolution"], test, args.eval_num_samples, options)
    return EndOfTaskEvaluation(
        evaluator, built["conditioning"], train_scheduler, built["metadata"]["classes_per_task"], args.output_dir
    )
