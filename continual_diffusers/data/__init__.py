"""Task data: the task-file format (safe and legacy), validation, transforms, datasets, bundled data sets and the
replay buffer.

A `TaskSequence` is indexed by task id, not by position: `tasks[1]` is the task whose id is 1 (ids start at 1 in
the bundled data), `tasks[0]` raises KeyError. Iterate (`for task in tasks`, sorted by id) or use `tasks.task_ids`
for positions.
"""

from continual_diffusers.data.buffer import AllData, NoData, ReplayBuffer, Reservoir, TaskBalanced
from continual_diffusers.data.dataset import TaskDataset, collate
from continual_diffusers.data.digits import load_split_digits, write_split_digits
from continual_diffusers.data.tasks import (
    Task,
    TaskFileError,
    TaskSequence,
    convert_legacy,
    load_tasks,
    save_tasks,
    tasks_from_dict,
)
from continual_diffusers.data.transforms import ImageTransform

__all__ = [
    "AllData",
    "ImageTransform",
    "NoData",
    "ReplayBuffer",
    "Reservoir",
    "Task",
    "TaskDataset",
    "TaskFileError",
    "TaskBalanced",
    "TaskSequence",
    "collate",
    "convert_legacy",
    "load_split_digits",
    "load_tasks",
    "save_tasks",
    "tasks_from_dict",
    "write_split_digits",
]
