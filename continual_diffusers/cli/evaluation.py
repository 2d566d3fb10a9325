"""The evaluation flags of the training entry points (`--eval_every_task`, `--test_data_path`, `--oracle_path`,
`--eval_num_samples`) → the library's oracle and end-of-task evaluation (evaluation/oracle.py)."""

from __future__ import annotations

from ..data import TaskSequence
from ..evaluation.oracle import check_oracle_inputs, check_oracle_scores, end_of_task_evaluation, load_test_tasks
from .base import RunOptions, RunParts


def check_evaluation(opts: RunOptions, parts: RunParts) -> TaskSequence | None:
    """Validate the evaluation flags before anything is written; returns the test tasks (None: no evaluation)."""
    if not opts.evaluation.eval_every_task:
        return None
    check_oracle_scores(parts.conditioning)
    test = load_test_tasks(opts.evaluation.test_data_path, opts.data.data_path)
    check_oracle_inputs(parts.tasks, test, opts.evaluation.oracle_path, opts.run.output_dir)
    return test


def build_end_of_task_eval(
    opts: RunOptions, parts: RunParts, test: TaskSequence | None, options, oracle=None
):  # fmt: skip
    """The trainer's end-of-task evaluation callback, or None. `oracle`: (model, config) from `existing_oracle`;
    None: load or train one (`get_oracle`)."""
    if test is None:
        return None
    evaluation = opts.evaluation
    return end_of_task_evaluation(
        parts.spec, parts.conditioning, parts.tasks, test, parts.objective.scheduler, options, opts.run.output_dir,
        num_samples=evaluation.eval_num_samples, oracle_path=evaluation.oracle_path, seed=opts.train.seed,
        oracle=oracle,
    )  # fmt: skip
