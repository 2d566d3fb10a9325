"""Task data: the task-file format (safe and legacy), validation, transforms, datasets, bundled data sets and the
replay buffer.

A `TaskSequence` is indexed by task id, not by position: `tasks[1]` is the task whose id is 1 (ids start at 1 in
the bundled data), `tasks[0]` raises KeyError. Iterate (`for task in tasks`, sorted by id) or use `tasks.task_ids`
for positions.
"""

from continual_diffusers.data.batches import collate
from continual_diffusers.data.buffer import AllData, NoData, ReplayBuffer, Reservoir, TaskBalanced
from continual_diffusers.data.builder import BuildOptions, build_task_files
from continual_diffusers.data.classorder import resolve_class_order, split_classes
from continual_diffusers.data.dataset import TaskDataset
from continual_diffusers.data.digits import load_split_digits, write_split_digits
from continual_diffusers.data.hf import read_hf_dataset
from continual_diffusers.data.imagefolder import scan_image_folder
from continual_diffusers.data.lazy import LazyImages, read_task_folder, write_task_folder
from continual_diffusers.data.task_sequence import Task, TaskFileError, TaskSequence, tasks_from_dict
from continual_diffusers.data.tasks import convert_legacy, load_task_file, load_tasks, save_tasks
from continual_diffusers.data.transforms import ImageTransform

__all__ = [
    "AllData",
    "BuildOptions",
    "ImageTransform",
    "LazyImages",
    "NoData",
    "ReplayBuffer",
    "Reservoir",
    "Task",
    "TaskDataset",
    "TaskFileError",
    "TaskBalanced",
    "TaskSequence",
    "build_task_files",
    "collate",
    "convert_legacy",
    "load_split_digits",
    "load_task_file",
    "load_tasks",
    "read_hf_dataset",
    "read_task_folder",
    "resolve_class_order",
    "save_tasks",
    "scan_image_folder",
    "split_classes",
    "tasks_from_dict",
    "write_split_digits",
    "write_task_folder",
]
