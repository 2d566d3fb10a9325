#!/usr/bin/env python
"""Sample from a trained task model and write the images to disk.

    python evaluate.py --model_path outputs/demo/task_5                     # 8 samples of every class seen so far
    python evaluate.py --model_path outputs/demo/task_5 --class_labels 0 1 --num_samples 16 --guidance_scale 3
    python evaluate.py --model_path outputs/clip/task_2 --validation_prompts "a photo of a cat"

Writes output_dir/samples.png (one row per label), output_dir/samples.npz (uint8 NHWC images + labels, no pickle)
and output_dir/samples/<label>_<i>.png.
"""

from __future__ import annotations

import os
import sys

from continual_diffusers import cli
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger, setup_cli_logging

logger = get_logger("evaluate")


def parser():
    p = cli.new_parser("Sample from an exported task model (output_dir/task_<k>/) and write the images to disk.")
    g = p.add_argument_group("Model")
    g.add_argument("--model_path", "--model_config_name_or_path", dest="model_path", required=True,
                   help="an exported task folder, e.g. outputs/demo/task_3")
    g.add_argument("--ema", choices=["auto", "yes", "no"], default="auto", help="use unet_ema/ (auto: if present)")
    cli.add_sampler_args(p)
    g = p.add_argument_group("Labels")
    g.add_argument("--class_labels", type=int, nargs="+", default=None,
                   help="classes to sample (class models); default: every class the model has seen")
    g.add_argument("--sampling_batch_size", type=int, default=64, help="images per forward pass")
    g = p.add_argument_group("Output")
    g.add_argument("--output_dir", default=None, help="default: <model_path>/eval")
    g.add_argument("--seed", type=int, default=0)
    return p


def run(args) -> str:
    import torch

    from continual_diffusers.evaluation.generate import write_samples
    from continual_diffusers.sampling.generate import generate_samples
    from continual_diffusers.models.loading import load_task_model

    cli.check_sampler_ranges(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    use_ema = {"auto": None, "yes": True, "no": False}[args.ema]
    model, conditioning, scheduler, meta = load_task_model(args.model_path, use_ema, device)
    labels = cli.sample_labels(args, meta)
    images = generate_samples(model, conditioning, scheduler, labels, cli.sampler_options(args, meta), device)
    out = args.output_dir or os.path.join(args.model_path, "eval")
    write_samples(out, images, labels, args.num_samples)
    logger.info("wrote %d samples to %s", images.shape[0], out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_cli_logging()
    try:
        run(args)
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
