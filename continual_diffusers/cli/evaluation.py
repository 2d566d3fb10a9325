"""End-of-task evaluation (oracle, test data) from the evaluation config; `load_test_tasks` and `get_oracle` are
shared with `python -m continual_diffusers.evaluation`."""

from __future__ import annotations

import os
from typing import NamedTuple

from ..data import TaskSequence, load_split_digits, load_tasks
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.logging import get_logger

logger = get_logger(__name__)


def load_test_tasks(args) -> TaskSequence:
    """The real test tasks: --test_data_path, or the bundled digits' held-out split when training on them.
    `args`: anything with `test_data_path` (and `data_path`): flags or `EvaluationConfig` + `DataConfig`."""
    if args.test_data_path:
        if not os.path.exists(args.test_data_path):
            raise UserInputError(f"--test_data_path {args.test_data_path}: no such task file or task folder")
        return load_tasks(args.test_data_path)
    if getattr(args, "data_path", None) is None:
        return load_split_digits()[1]
    raise UserInputError("--eval_every_task needs --test_data_path (real test images of each task)")


# An oracle's config.json: its sizes (OracleCNN: GroupNorm(8, ·) needs widths divisible by 8).
ORACLE_SIZES = {
    "in_channels": b.CHANNELS,
    "num_classes": b.NUM_CLASSES,
    "width": b.CHANNELS,
    "feature_dim": b.CHANNELS,
}


def load_checked_oracle(path: str, test: TaskSequence):
    """(oracle, its config) from an oracle folder, refused (`UserInputError`) unless its config is sane, its
    weights load and are finite, and it classifies images like the test tasks' (channels, classes)."""
    import torch

    from ..evaluation.classifier import load_oracle
    from ..models.loading import read_json_object

    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise UserInputError(
            f"{path}: not an oracle folder (no config.json); train one with "
            "`python -m continual_diffusers.evaluation train-oracle`"
        )
    meta = read_json_object(file)
    for key, bounds in {**ORACLE_SIZES, "resolution": b.RESOLUTION}.items():
        bounds.check(f"{file}: {key}", meta.get(key))
    if meta["width"] % 8 or meta["feature_dim"] % 8:
        raise UserInputError(f"{file}: width and feature_dim must be multiples of 8")
    try:
        oracle, meta = load_oracle(path)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        reason = " ".join(line.strip() for line in str(err).splitlines()[:2])  # torch: "Error(s) in …:\n\tsize …"
        raise UserInputError(f"{path}: the oracle does not load ({reason})") from err
    if not all(bool(torch.isfinite(p).all()) for p in oracle.parameters()):
        raise UserInputError(f"{path}/model.safetensors: the oracle's weights hold NaN or infinite values")
    if meta["in_channels"] != test.num_channels or meta["num_classes"] < test.num_classes:
        raise UserInputError(
            f"{path}: the oracle takes {meta['in_channels']}-channel images of {meta['num_classes']} classes, the "
            f"test tasks have {test.num_channels} channel(s) and {test.num_classes} classes"
        )
    return oracle, meta


def existing_oracle(oracle_path: str | None, test: TaskSequence, output_dir: str):
    """--oracle_path, or output_dir/oracle when an earlier run trained one, loaded and checked; None when one must
    be trained (which writes, so it happens after every check)."""
    path = oracle_path or os.path.join(output_dir, "oracle")
    if oracle_path or os.path.isfile(os.path.join(path, "config.json")):
        return load_checked_oracle(path, test)
    return None


def get_oracle(args, train: TaskSequence, test: TaskSequence, resolution: int, output_dir: str):
    """(oracle, its config): load `args.oracle_path`, or output_dir/oracle, or train one there (`args.seed`)."""
    from ..evaluation.classifier import save_oracle, train_oracle

    found = existing_oracle(args.oracle_path, test, output_dir)
    if found is not None:
        return found
    path = os.path.join(output_dir, "oracle")
    logger.info("training the oracle classifier on all tasks' training data (once per output dir)")
    model, acc = train_oracle(train, test, resolution, seed=args.seed)
    logger.info("oracle test accuracy %.4f, saved in %s", acc, path)
    save_oracle(model, path, resolution, acc)
    return load_checked_oracle(path, test)


def check_evaluation(opts, built: dict) -> TaskSequence | None:
    """Validate the evaluation flags before anything is written; returns the test tasks (None: no evaluation)."""
    if not opts.evaluation.eval_every_task:
        return None
    if built["conditioning"].kind == "text":
        raise UserInputError("--eval_every_task needs class labels; text-conditioned runs get sample grids only")
    test = load_test_tasks(_EvalPaths(opts.evaluation.test_data_path, opts.data.data_path))
    missing = sorted(set(built["tasks"].task_ids) - set(test.task_ids))
    if missing:
        raise UserInputError(f"--test_data_path has no test images for task(s) {missing}")
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
        _OraclePlace(opts.evaluation.oracle_path, opts.train.seed), tasks, test, resolution, output_dir
    )
    evaluator = ContinualEvaluator(oracle, meta["resolution"], test, samples, options, tasks)  # tasks: memorisation
    return EndOfTaskEvaluation(
        evaluator, built["conditioning"], train_scheduler, built["metadata"]["classes_per_task"], output_dir
    )


class _EvalPaths(NamedTuple):  # what `load_test_tasks` reads
    test_data_path: str | None
    data_path: str | None


class _OraclePlace(NamedTuple):  # what `get_oracle` reads
    oracle_path: str | None
    seed: int
