"""The data a `report` evaluates a run on, and what must hold before it writes anything.

`report_data_paths`: the training and test task files of a run: the flags when given, else the ones the run's
config.json recorded ("args": data_path, test_data_path), so that a run trained on its own images is never scored
against the bundled digits. A run trained on the bundled digits records no data_path, and is evaluated on them.
`check_report_inputs`: the exports, the test tasks and the data an oracle would be trained on fit together
(channels, tasks, class labels), checked before the oracle is trained into run_dir/oracle: a refused report leaves
nothing behind that would block its corrected rerun.
"""

from __future__ import annotations

import os

from ..data import TaskSequence
from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json_object

RUN_CONFIG = "config.json"  # written by the training entry points into their --output_dir


def recorded_data_paths(run_dir: str) -> tuple[str | None, str | None]:
    """(data_path, test_data_path) as run_dir/config.json's "args" recorded them (None: not given to the run)."""
    path = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.lexists(path):
        raise UserInputError(f"{path}: not found, so the run's data is unknown; pass --data_path and --test_data_path")
    args = read_json_object(path).get("args")
    if not isinstance(args, dict):
        raise UserInputError(f'{path}: no "args" object recording the run\'s data; pass --data_path')
    values = []
    for key in ("data_path", "test_data_path"):
        value = args.get(key)
        if value is not None and not (isinstance(value, str) and value):
            raise UserInputError(f"{path}: args.{key} must be a path or null; pass --{key}")
        values.append(value)
    return values[0], values[1]


def report_data_paths(run_dir: str, data_path: str | None, test_data_path: str | None) -> tuple[str | None, ...]:
    """(data_path, test_data_path) of the report: `data_path` given, or read with the test path from run_dir's
    config.json (`recorded_data_paths`); (None, None) for a run on the bundled digits. Refuses (`UserInputError`) a
    recorded file that is gone, and a run on its own data without test images."""
    if data_path is None:
        data_path, recorded_test = recorded_data_paths(run_dir)
        where = os.path.join(run_dir, RUN_CONFIG)
        for flag, value in (("data_path", data_path), ("test_data_path", recorded_test)):
            if value is not None and not os.path.exists(value):
                raise UserInputError(
                    f"{where} records --{flag} {value}, which is not there (from {os.getcwd()}); pass --{flag}"
                )
        test_data_path = test_data_path or recorded_test
    if data_path is not None and test_data_path is None:
        raise UserInputError(
            f"report needs the run's real test images: pass --test_data_path (the run at {run_dir} had none)"
        )
    return data_path, test_data_path


def check_report_inputs(spec, conditioning, train: TaskSequence, test: TaskSequence) -> None:
    """The final export (`spec`, `conditioning`) can be scored against `test` by an oracle trained on `train`:
    class-labelled samples, test images of every task it saw, with its channels (pixel models)."""
    if conditioning.oracle_evaluation is None:
        raise UserInputError(
            f"report scores samples with an oracle classifier; {conditioning.description} runs get sample grids only"
        )
    missing = sorted(set(spec.seen_tasks) - set(test.task_ids))
    if missing:
        raise UserInputError(f"the test task file has no task(s) {missing} of the run (it has {test.task_ids})")
    if spec.latent is None and spec.in_channels != test.num_channels:
        raise UserInputError(
            f"the run's images have {spec.in_channels} channel(s), the test task file's {test.num_channels}: "
            "is it the run's data? (pass --data_path and --test_data_path)"
        )
    if train.num_channels != test.num_channels:
        raise UserInputError(
            f"the training task file has {train.num_channels}-channel images, the test task file "
            f"{test.num_channels}-channel ones"
        )
