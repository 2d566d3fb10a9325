"""Task-file tools: `python -m continual_diffusers.data {convert,digits,shapes,from-folder,from-hf,info} ...`.

python -m continual_diffusers.data convert legacy_tasks.npz tasks.npz    # legacy (pickled) → safe format
python -m continual_diffusers.data convert tasks.npz tasks --layout folder   # → a task folder, read lazily
python -m continual_diffusers.data digits --output_dir ./data            # bundled 8×8 digits, 5 tasks
python -m continual_diffusers.data from-folder ROOT --classes_per_task 2 --resolution 32 --test_fraction 0.2
python -m continual_diffusers.data from-hf ./my_dataset --classes_per_task 2 --caption_column text
python -m continual_diffusers.data shapes --output_dir ./data            # coloured shapes + object masks
python -m continual_diffusers.data info ./data/digits_tasks_train.npz    # tasks, sizes, labels
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from continual_diffusers.data.builder import BuildOptions, build_task_files
from continual_diffusers.data.classorder import order_summary
from continual_diffusers.data.digits import write_split_digits
from continual_diffusers.data.task_sequence import TaskSequence
from continual_diffusers.data.tasks import convert_legacy, load_tasks
from continual_diffusers.utils.display import safe_display
from continual_diffusers.utils.entrypoint import new_parser, run_main
from continual_diffusers.utils.errors import UserInputError


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Convert legacy task files, write the bundled digits or the shapes tasks, or describe a task file.",
        "python -m continual_diffusers.data",
    )
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="convert, digits, shapes, from-folder, from-hf or info",
    )
    convert = commands.add_parser(
        "convert", help="rewrite a task file (legacy, safe or folder) in the safe format, as an .npz or a task folder"
    )
    convert.add_argument("src", help="task file: legacy .npz with a pickled 'data_structure', safe .npz or folder")
    convert.add_argument("dst", help="output .npz (safe format), or folder with --layout folder")
    _add_layout(convert)
    digits = commands.add_parser("digits", help="write the bundled 8x8 digits as train/test task files")
    digits.add_argument("--output_dir", required=True, help="folder for digits_tasks_{train,test}.npz")
    digits.add_argument("--num_tasks", type=int, default=None, help="tasks; must divide the 10 classes (default 5)")
    _add_order_flags(digits, required=False)
    digits.add_argument("--test_fraction", type=float, default=0.2, help="share of each class held out for test")
    digits.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    _add_shapes_parser(commands)
    folder = commands.add_parser(
        "from-folder", help="write an image folder ROOT/<class>/<images> as class-incremental task files"
    )
    folder.add_argument("root", help="folder with one sub-folder of images per class (class ids: sorted names)")
    _add_build_flags(folder)
    folder.add_argument(
        "--caption_template", default=None, help="caption each image, e.g. 'a photo of a {}' ({} = class folder name)"
    )
    hf = commands.add_parser(
        "from-hf",
        help="write a local Hugging Face dataset (save_to_disk folder, parquet or arrow files) as task files",
    )
    hf.add_argument("path", help="dataset folder (save_to_disk), .parquet / .arrow file, or folder of them")
    hf.add_argument("--split", default="train", help="split of a DatasetDict folder")
    hf.add_argument("--image_column", default="image", help="column of encoded images (datasets.Image or bytes)")
    hf.add_argument("--label_column", default="label", help="column of class ids or class names (tasks by class)")
    hf.add_argument("--caption_column", default=None, help="column of captions: text-conditioned tasks (main_ldm)")
    _add_build_flags(hf)
    hf.add_argument(
        "--caption_template", default=None, help="caption each image, e.g. 'a photo of a {}' ({} = class name)"
    )
    info = commands.add_parser("info", help="validate a task file and describe its tasks")
    info.add_argument("path", help="task file (.npz, either format)")
    return parser


def _add_layout(parser) -> None:
    parser.add_argument(
        "--layout",
        choices=["npz", "folder"],
        default="npz",
        help="npz: one file, loaded whole; folder: one .npy per task, images read lazily batch by batch",
    )


def _add_order_flags(parser, required: bool) -> None:
    parser.add_argument(
        "--classes_per_task",
        type=int,
        default=None,
        required=required,
        help="classes in each task, cut from the class order (the last task may hold fewer)"
        + ("" if required else "; instead of --num_tasks"),
    )
    parser.add_argument(
        "--class_order",
        default=None,
        help="comma-separated class order, e.g. 3,1,0,2 (class names or ids; default: ids in increasing order)",
    )
    parser.add_argument(
        "--class_order_seed", type=int, default=None, help="random class order: numpy default_rng(S).permutation"
    )


def _add_build_flags(parser) -> None:
    _add_order_flags(parser, required=True)
    parser.add_argument("--output_dir", default="./data", help="where the task files are written")
    parser.add_argument(
        "--name", default=None, help="output names {name}_tasks_{train,test} (default: the input's name)"
    )
    parser.add_argument(
        "--resolution", type=int, default=None, help="resize the shorter side to R and centre-crop RxR (default: keep)"
    )
    parser.add_argument("--channels", choices=["auto", "1", "3"], default="auto", help="auto: 1 if all are grayscale")
    parser.add_argument(
        "--test_fraction", type=float, default=0.0, help="share of each class held out for a test file (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    _add_layout(parser)


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
    if sequence.class_order is not None:
        names = sequence.class_names
        shown = [
            f"{c} ({safe_display(names[c], 100)})" if names is not None and c < len(names) else str(c)
            for c in sequence.class_order
        ]
        lines.append(f"  class order: {', '.join(shown)}")
    for task in sequence:
        detail = f", classes {task.classes()}" if task.label_kind == "class" else ""
        if task.label_kind == "text":
            detail = f", {len(np.unique(task.labels))} distinct captions, e.g. {str(task.labels[0])[:100]!r}"
        lines.append(f"  task {task.task_id}: {len(task)} images{detail}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    if args.command == "convert":
        convert_legacy(args.src, args.dst, args.layout)
    elif args.command in ("from-folder", "from-hf"):
        _build(args)
    elif args.command == "shapes":
        from continual_diffusers.data.shapes import write_shapes

        write_shapes(
            args.output_dir, args.num_train, args.num_test, num_tasks=args.num_tasks, resolution=args.resolution,
            split=args.split, num_objects=(args.min_objects, args.max_objects),
            size_range=(args.min_size, args.max_size), seed=args.seed,
        )  # fmt: skip
    elif args.command == "digits":
        kwargs = {"num_tasks": args.num_tasks, "test_fraction": args.test_fraction, "seed": args.seed}
        order = {"classes_per_task": args.classes_per_task, "class_order": args.class_order}
        write_split_digits(args.output_dir, **kwargs, **order, class_order_seed=args.class_order_seed)
    else:
        print(describe(load_tasks(args.path)))


def _build(args: argparse.Namespace) -> None:
    from pathlib import Path

    if args.command == "from-folder":
        from continual_diffusers.data.imagefolder import scan_image_folder

        source, name = scan_image_folder(args.root), args.name or Path(args.root).resolve().name
    else:
        from continual_diffusers.data.hf import read_hf_dataset

        if args.caption_column is not None and args.caption_template is not None:
            raise UserInputError("give --caption_column or --caption_template, not both")
        source = read_hf_dataset(args.path, args.image_column, args.label_column, args.caption_column, args.split)
        name = args.name or Path(args.path).resolve().name.split(".")[0]
    options = BuildOptions(
        classes_per_task=args.classes_per_task, class_order=args.class_order, class_order_seed=args.class_order_seed,
        resolution=args.resolution, channels=args.channels, test_fraction=args.test_fraction, seed=args.seed,
        caption_template=args.caption_template, layout=args.layout,
    )  # fmt: skip
    written = build_task_files(source, options, args.output_dir, name)
    sequence = load_tasks(written["train"])
    for path in written.values():
        print(f"wrote {safe_display(path)}")
    print(f"class order: {order_summary(sequence.class_order, sequence.class_names, args.classes_per_task)}")


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
