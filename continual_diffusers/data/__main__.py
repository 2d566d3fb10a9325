"""Task-file tools: `python -m continual_diffusers.data {convert,digits,info} ...`.

python -m continual_diffusers.data convert legacy_tasks.npz tasks.npz    # legacy (pickled) → safe format
python -m continual_diffusers.data digits --output_dir ./data            # bundled 8×8 digits, 5 tasks
python -m continual_diffusers.data shapes --output_dir ./data            # coloured shapes + object masks
python -m continual_diffusers.data info ./data/digits_tasks_train.npz    # tasks, sizes, labels
"""

from __future__ import annotations

import argparse
import sys

from continual_diffusers.data.digits import write_split_digits
from continual_diffusers.data.tasks import TaskSequence, convert_legacy, load_tasks
from continual_diffusers.utils.entrypoint import new_parser, run_main


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Convert legacy task files, write the bundled digits or the shapes tasks, or describe a task file.",
        "python -m continual_diffusers.data",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="convert, digits, shapes or info"
    )
    convert = commands.add_parser("convert", help="rewrite a legacy (pickled) task file in the safe format")
    convert.add_argument("src", help="legacy .npz with a pickled 'data_structure'")
    convert.add_argument("dst", help="output .npz (safe format)")
    digits = commands.add_parser("digits", help="write the bundled 8x8 digits as train/test task files")
    digits.add_argument("--output_dir", required=True, help="folder for digits_tasks_{train,test}.npz")
    digits.add_argument("--num_tasks", type=int, default=5, help="tasks; must divide the 10 classes")
    digits.add_argument("--test_fraction", type=float, default=0.2, help="share of each class held out for test")
    digits.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    _add_shapes_parser(commands)
    info = commands.add_parser("info", help="validate a task file and describe its tasks")
    info.add_argument("path", help="task file (.npz, either format)")
    return parser


def _add_shapes_parser(commands) -> None:
    shapes = commands.add_parser(
        "shapes", help="write a synthetic multi-object task sequence (coloured shapes on black) with object masks"
    )
    shapes.add_argument("--output_dir", required=True, help="folder for shapes_tasks_{train,test}.npz (+ .masks.npz)")
    shapes.add_argument("--num_tasks", type=int, default=2, help="tasks")
    shapes.add_argument("--split", choices=["shape", "colour"], default="shape", help="what differs between tasks")
    shapes.add_argument("--num_train", type=int, default=512, help="training images per task")
    shapes.add_argument("--num_test", type=int, default=128, help="test images per task")
    shapes.add_argument("--resolution", type=int, default=16, help="canvas side in pixels")
    shapes.add_argument("--min_objects", type=int, default=1, help="fewest objects per image")
    shapes.add_argument("--max_objects", type=int, default=3, help="most objects per image")
    shapes.add_argument("--min_size", type=int, default=4, help="smallest object box side")
    shapes.add_argument("--max_size", type=int, default=6, help="largest object box side")
    shapes.add_argument("--seed", type=int, default=0, help="seed of the images and the train/test split")


def describe(sequence: TaskSequence) -> str:
    """A human-readable summary: one header line, then one line per task."""
    height, width = sequence.image_size
    lines = [
        f"{len(sequence)} task(s), images {height}x{width}x{sequence.num_channels} uint8, "
        f"labels: {sequence.label_kind}" + (f" ({sequence.num_classes} classes)" if sequence.num_classes else "")
    ]
    for task in sequence:
        detail = f", classes {task.classes()}" if task.label_kind == "class" else ""
        if task.label_kind == "text":
            detail = f", {len(set(task.labels.tolist()))} distinct captions, e.g. {str(task.labels[0])!r}"
        lines.append(f"  task {task.task_id}: {len(task)} images{detail}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    if args.command == "convert":
        convert_legacy(args.src, args.dst)
    elif args.command == "shapes":
        from continual_diffusers.data.shapes import write_shapes

        write_shapes(
            args.output_dir, args.num_train, args.num_test, num_tasks=args.num_tasks, resolution=args.resolution,
            split=args.split, num_objects=(args.min_objects, args.max_objects),
            size_range=(args.min_size, args.max_size), seed=args.seed,
        )  # fmt: skip
    elif args.command == "digits":
        kwargs = {"num_tasks": args.num_tasks, "test_fraction": args.test_fraction, "seed": args.seed}
        write_split_digits(args.output_dir, **kwargs)
    else:
        print(describe(load_tasks(args.path)))


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
