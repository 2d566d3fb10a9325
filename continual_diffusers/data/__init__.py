"""Task data: the task-file format (safe and legacy), validation, transforms, datasets and bundled data sets."""

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
    "ImageTransform",
    "Task",
    "TaskDataset",
    "TaskFileError",
    "TaskSequence",
    "collate",
    "convert_legacy",
    "load_split_digits",
    "load_tasks",
    "save_tasks",
    "tasks_from_dict",
    "write_split_digits",
]
