"""Resuming a checkpoint of another run into a new output folder (branching a run, e.g. to try another strategy from
`runA/checkpoint-3`): the tasks finished before the checkpoint are not trained again, so their exports `task_<k>/`
would be missing from the new run. They are copied from the checkpoint's run, which holds them
(`runA/task_<k>/`, written when task k ended, before any later checkpoint); a finished task whose export is not there
is refused before anything is written, since the new run could not produce it."""

from __future__ import annotations

import os
import shutil

from ..models.spec import METADATA_FILE
from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json_object
from ..utils.logging import get_logger
from .checkpoint import STATE_FILE

logger = get_logger(__name__)


def exports_to_carry(resume: str, output_dir: str) -> list[tuple[str, str]]:
    """(source, destination) of the task exports a run resumed from checkpoint `resume` into `output_dir` lacks:
    the tasks in the checkpoint's `seen_tasks` without a `task_<k>/` in `output_dir`. Empty when the checkpoint is
    in `output_dir` itself. A missing source export is a `UserInputError` naming it."""
    source_run = os.path.dirname(os.path.abspath(resume))
    if source_run == os.path.abspath(output_dir):
        return []
    seen = read_json_object(os.path.join(resume, STATE_FILE)).get("seen_tasks")
    if not isinstance(seen, list):
        return []  # the checkpoint's position is checked (and refused) with the rest of its state
    pairs = []
    for task_id in seen:
        name = f"task_{task_id}"
        destination = os.path.join(output_dir, name)
        if os.path.exists(destination):  # e.g. copied by an earlier attempt at this resume
            continue
        source = os.path.join(source_run, name)
        if not os.path.isfile(os.path.join(source, METADATA_FILE)):
            raise UserInputError(
                f"--resume_from_checkpoint {resume}: task {task_id} ended before this checkpoint, but its export "
                f"{source} is missing, so --output_dir {output_dir} would have no {name}/: resume into "
                f"{source_run} or put the export back"
            )
        pairs.append((source, destination))
    return pairs


def carry_exports(pairs: list[tuple[str, str]]) -> None:
    """Copy each export (`exports_to_carry`), through a temporary name so a crash leaves no half copy."""
    for source, destination in pairs:
        partial = destination + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial, symlinks=True)
        os.replace(partial, destination)
        logger.warning("resumed from another run: copied its export %s to %s", source, destination)
