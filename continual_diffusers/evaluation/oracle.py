"""The oracle of a run's evaluation: the real test tasks it compares with (`load_test_tasks`), an oracle folder a
user points to (`--oracle_path`, or one an earlier run trained) checked before it judges anything (a sane config,
weights that load and are finite, the test tasks' channels and classes: `load_checked_oracle`), or one trained on
the training tasks (`get_oracle`); what must hold before a run that trains one writes anything
(`check_oracle_inputs`); and the end-of-task evaluation it scores (`end_of_task_evaluation`). Shared by the training
entry points (`--eval_every_task`) and `python -m continual_diffusers.evaluation`."""

from __future__ import annotations

import os

from ..data import TaskSequence, load_split_digits, load_task_file
from ..utils.errors import UserInputError
from ..utils.logging import get_logger

logger = get_logger(__name__)
ORACLE_FOLDER = "oracle"  # output_dir/oracle: where a run trains its oracle


def load_test_tasks(test_data_path: str | None, data_path: str | None) -> TaskSequence:
    """The real test tasks: --test_data_path, or the bundled digits' held-out split when training on them
    (`data_path` None)."""
    if test_data_path:
        return load_task_file(test_data_path, "--test_data_path")
    if data_path is None:
        return load_split_digits()[1]
    raise UserInputError("--eval_every_task needs --test_data_path (real test images of each task)")


def load_checked_oracle(path: str, test: TaskSequence):
    """(oracle, its config) from an oracle folder, refused (`UserInputError`) unless its config is sane and fits
    its weights (`load_oracle`), the weights load and are finite, and it classifies images like the test tasks'
    (channels, classes)."""
    import torch

    from .classifier import load_oracle

    try:
        oracle, config = load_oracle(path)
    except UserInputError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        reason = " ".join(line.strip() for line in str(err).splitlines()[:2])  # torch: "Error(s) in …:\n\tsize …"
        raise UserInputError(f"{path}: the oracle does not load ({reason})") from err
    if not all(bool(torch.isfinite(p).all()) for p in oracle.parameters()):
        raise UserInputError(f"{path}/model.safetensors: the oracle's weights hold NaN or infinite values")
    if config["in_channels"] != test.num_channels or config["num_classes"] < test.num_classes:
        raise UserInputError(
            f"{path}: the oracle takes {config['in_channels']}-channel images of {config['num_classes']} classes, the "
            f"test tasks have {test.num_channels} channel(s) and {test.num_classes} classes"
        )
    return oracle, config


def existing_oracle(oracle_path: str | None, test: TaskSequence, output_dir: str):
    """--oracle_path, or output_dir/oracle when an earlier run trained one, loaded and checked; None when one must
    be trained (which writes, so it happens after every check)."""
    path = oracle_path or os.path.join(output_dir, ORACLE_FOLDER)
    if oracle_path or os.path.lexists(os.path.join(path, "config.json")):
        return load_checked_oracle(path, test)
    return None


def get_oracle(
    oracle_path: str | None, seed: int, train: TaskSequence, test: TaskSequence, resolution: int, output_dir: str
):
    """(oracle, its config): load `oracle_path`, or output_dir/oracle, or train one there (seeded with `seed`)."""
    from .classifier import save_oracle, train_oracle

    found = existing_oracle(oracle_path, test, output_dir)
    if found is not None:
        return found
    path = os.path.join(output_dir, ORACLE_FOLDER)
    logger.info("training the oracle classifier on all tasks' training data (once per output dir)")
    model, acc = train_oracle(train, test, resolution, seed=seed)
    logger.info("oracle test accuracy %.4f, saved in %s", acc, path)
    save_oracle(model, path, resolution, acc)
    return existing_oracle(path, test, output_dir)


def check_oracle_scores(conditioning) -> None:
    """The oracle scores class-conditional and unconditional samples (`Conditioning.oracle_evaluation`)."""
    if conditioning.oracle_evaluation is None:
        raise UserInputError(
            f"--eval_every_task needs class labels; {conditioning.description} runs get sample grids only"
        )


def check_oracle_inputs(train: TaskSequence, test: TaskSequence, oracle_path: str | None, output_dir: str) -> None:
    """What an end-of-task evaluation needs before anything is written: test images of every training task and,
    when the oracle is still to be trained, class-labelled training and test images."""
    missing = sorted(set(train.task_ids) - set(test.task_ids))
    if missing:
        raise UserInputError(f"--test_data_path has no test images for task(s) {missing}")
    oracle_dir = os.path.join(output_dir, ORACLE_FOLDER)
    if not oracle_path and not os.path.lexists(os.path.join(oracle_dir, "config.json")):
        # the oracle is trained once training starts, on class-labelled images: refuse now, before any write
        for name, tasks in (("--data_path", train), ("--test_data_path", test)):
            if tasks.label_kind != "class":
                kind = "no" if tasks.label_kind == "none" else tasks.label_kind
                raise UserInputError(
                    f"--eval_every_task trains an oracle classifier on class labels, but {name} has {kind} labels; "
                    "pass a trained --oracle_path or class-labelled data"
                )


def end_of_task_evaluation(
    spec, conditioning, train: TaskSequence, test: TaskSequence, train_scheduler, options, output_dir: str, *,
    num_samples: int, oracle_path: str | None = None, seed: int = 0, oracle=None,
):  # fmt: skip
    """The trainer's end-of-task evaluation (`EndOfTaskEvaluation`) of a run with model `spec` (a `ModelSpec`):
    `num_samples` images per task sampled with `options` (`SamplerOptions`), scored by `oracle` ((model, config)
    from `existing_oracle`; None: load `oracle_path` or output_dir/oracle, or train one there with `seed`) against
    the `test` tasks, with the `train` tasks' images for the memorisation measures."""
    from .evaluator import ContinualEvaluator
    from .task_eval import EndOfTaskEvaluation

    oracle, config = oracle or get_oracle(oracle_path, seed, train, test, spec.resolution, output_dir)
    evaluator = ContinualEvaluator(oracle, config["resolution"], test, num_samples, options, train)
    return EndOfTaskEvaluation(evaluator, conditioning, train_scheduler, spec.classes_per_task, output_dir)
