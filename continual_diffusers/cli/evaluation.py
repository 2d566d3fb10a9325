"""End-of-task evaluation (oracle, test data) from the evaluation config; `load_test_tasks` and `get_oracle` are
shared with `python -m continual_diffusers.evaluation`."""

from __future__ import annotations

import os

from ..data import TaskSequence, load_split_digits, load_tasks
from ..utils.errors import UserInputError
from ..utils.logging import get_logger

logger = get_logger(__name__)


def load_test_tasks(test_data_path: str | None, data_path: str | None) -> TaskSequence:
    """The real test tasks: --test_data_path, or the bundled digits' held-out split when training on them
    (`data_path` None)."""
    if test_data_path:
        if not os.path.exists(test_data_path):
            raise UserInputError(f"--test_data_path {test_data_path}: no such task file or task folder")
        return load_tasks(test_data_path)
    if data_path is None:
        return load_split_digits()[1]
    raise UserInputError("--eval_every_task needs --test_data_path (real test images of each task)")


def existing_oracle(oracle_path: str | None, test: TaskSequence, output_dir: str):
    """--oracle_path, or output_dir/oracle when an earlier run trained one, loaded and checked; None when one must
    be trained (which writes, so it happens after every check)."""
    from ..evaluation.oracle_check import load_checked_oracle  # on use: the evaluation package is heavy to import

    path = oracle_path or os.path.join(output_dir, "oracle")
    if oracle_path or os.path.lexists(os.path.join(path, "config.json")):
        return load_checked_oracle(path, test)
    return None


def get_oracle(
    oracle_path: str | None, seed: int, train: TaskSequence, test: TaskSequence, resolution: int, output_dir: str
):
    """(oracle, its config): load `oracle_path`, or output_dir/oracle, or train one there (seeded with `seed`)."""
    from ..evaluation.classifier import save_oracle, train_oracle

    found = existing_oracle(oracle_path, test, output_dir)
    if found is not None:
        return found
    path = os.path.join(output_dir, "oracle")
    logger.info("training the oracle classifier on all tasks' training data (once per output dir)")
    model, acc = train_oracle(train, test, resolution, seed=seed)
    logger.info("oracle test accuracy %.4f, saved in %s", acc, path)
    save_oracle(model, path, resolution, acc)
    return existing_oracle(path, test, output_dir)


def check_evaluation(opts, built: dict) -> TaskSequence | None:
    """Validate the evaluation flags before anything is written; returns the test tasks (None: no evaluation)."""
    if not opts.evaluation.eval_every_task:
        return None
    if built["conditioning"].kind == "text":
        raise UserInputError("--eval_every_task needs class labels; text-conditioned runs get sample grids only")
    test = load_test_tasks(opts.evaluation.test_data_path, opts.data.data_path)
    missing = sorted(set(built["tasks"].task_ids) - set(test.task_ids))
    if missing:
        raise UserInputError(f"--test_data_path has no test images for task(s) {missing}")
    oracle_dir = os.path.join(opts.run.output_dir, "oracle")
    if not opts.evaluation.oracle_path and not os.path.lexists(os.path.join(oracle_dir, "config.json")):
        # the oracle is trained once training starts, on class-labelled images: refuse now, before any write
        for name, tasks in (("--data_path", built["tasks"]), ("--test_data_path", test)):
            if tasks.label_kind != "class":
                kind = "no" if tasks.label_kind == "none" else tasks.label_kind
                raise UserInputError(
                    f"--eval_every_task trains an oracle classifier on class labels, but {name} has {kind} labels; "
                    "pass a trained --oracle_path or class-labelled data"
                )
    return test


def build_end_of_task_eval(opts, built: dict, test: TaskSequence | None, train_scheduler, options, oracle=None):
    """The trainer's end-of-task evaluation callback, or None. `oracle`: (model, config) from `existing_oracle`;
    None: load or train one (`get_oracle`)."""
    if test is None:
        return None
    from ..evaluation.evaluator import ContinualEvaluator
    from ..evaluation.task_eval import EndOfTaskEvaluation

    output_dir, resolution = opts.run.output_dir, built["metadata"]["resolution"]
    tasks, samples = built["tasks"], opts.evaluation.eval_num_samples
    oracle, meta = oracle or get_oracle(
        opts.evaluation.oracle_path, opts.train.seed, tasks, test, resolution, output_dir
    )
    evaluator = ContinualEvaluator(oracle, meta["resolution"], test, samples, options, tasks)  # tasks: memorisation
    return EndOfTaskEvaluation(
        evaluator, built["conditioning"], train_scheduler, built["metadata"]["classes_per_task"], output_dir
    )
