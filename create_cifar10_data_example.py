"""Write CIFAR-10 as a class-incremental task sequence (5 tasks of 2 classes) in the safe task-file format.

    python create_cifar10_data_example.py --cifar_dir ./cifar --download --output_dir ./data --captions

Writes cifar10_tasks_{train,test}.npz (class labels 0-9) and, with --captions, cifar10_captions_tasks_{train,test}.npz
(captions "a photo of a {class}") for text-conditioned runs. The split is data: --classes_per_task N with
--class_order 3,1,... (ids, or class names such as airplane,cat when batches.meta is there) or --class_order_seed S;
the resolved order is recorded in the task files. --layout folder writes task folders, read lazily.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from continual_diffusers.data.cifar10 import (
    download_cifar10,
    find_batches_dir,
    load_cifar10,
    read_class_names,
    split_cifar10,
)
from continual_diffusers.data.tasks import save_tasks
from continual_diffusers.utils.entrypoint import new_parser, run_main
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__.splitlines()[0])
    parser.add_argument("--cifar_dir", required=True, help="folder holding cifar-10-batches-py/ (or the batches)")
    parser.add_argument("--download", action="store_true", help="download the official tarball into --cifar_dir")
    parser.add_argument("--output_dir", default="./data", help="where the task files are written")
    parser.add_argument("--num_tasks", type=int, default=5, help="tasks; must divide the 10 classes")
    parser.add_argument(
        "--classes_per_task",
        type=int,
        default=None,
        help="classes per task, instead of --num_tasks (the last may hold fewer)",
    )
    parser.add_argument(
        "--class_order", default=None, help="comma-separated class order, e.g. 3,1,0,... (ids or class names)"
    )
    parser.add_argument(
        "--class_order_seed", type=int, default=None, help="random class order: numpy default_rng(S).permutation"
    )
    parser.add_argument("--captions", action="store_true", help="also write the caption-labelled variant")
    parser.add_argument(
        "--layout",
        choices=["npz", "folder"],
        default="npz",
        help="npz: one file per split; folder: a task folder per split, images read lazily",
    )
    return parser


def run(args: argparse.Namespace) -> None:
    batches_dir = download_cifar10(args.cifar_dir) if args.download else find_batches_dir(args.cifar_dir)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    class_names = read_class_names(batches_dir) if args.captions else None
    names = class_names
    if names is None and (Path(batches_dir) / "batches.meta").is_file():
        names = read_class_names(batches_dir)
    order = {
        "classes_per_task": args.classes_per_task,
        "class_order": args.class_order,
        "class_order_seed": args.class_order_seed,
        "names": names,
    }
    for split in ("train", "test"):
        images, labels = load_cifar10(batches_dir, split)
        suffix = ".npz" if args.layout == "npz" else ""
        variants = {f"cifar10_tasks_{split}{suffix}": None}
        if class_names is not None:
            variants[f"cifar10_captions_tasks_{split}{suffix}"] = class_names
        for name, captions in variants.items():
            tasks = split_cifar10(images, labels, args.num_tasks, class_names=captions, **order)
            save_tasks(output_dir / name, tasks, args.layout)
            logger.info("wrote %s: %d tasks, %d images", output_dir / name, len(tasks), len(images))


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
