"""Sampling flags shared by end-of-task validation (main_ddpm) and evaluate.py, and their conversion."""

from __future__ import annotations

import argparse

from ..sampling.ancestral import SCHEDULERS
from ..utils.errors import UserInputError


def add_sampler_args(parser: argparse.ArgumentParser) -> None:
    """Sampling flags shared by end-of-task validation (main_ddpm) and evaluate.py."""
    g = parser.add_argument_group("Sampling", "ancestral sampling over a diffusers scheduler")
    g.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="ddim", help="sampling scheduler")
    g.add_argument("--num_inference_steps", "--ddpm_num_inference_steps", dest="num_inference_steps", type=int,
                   default=50)
    g.add_argument("--guidance_scale", type=float, default=2.0,
                   help="CFG scale w ≥ 0 (1: no guidance; used only for models trained with CFG)")
    g.add_argument("--num_samples", "--eval_batch_size", dest="num_samples", type=int, default=8,
                   help="images per class / prompt (one grid row each)")
    g.add_argument("--validation_prompts", nargs="+", default=None, help="prompts for text models")


def check_sampler_ranges(args: argparse.Namespace) -> None:
    for name in ("num_inference_steps", "num_samples"):
        if getattr(args, name) < 1:
            raise UserInputError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.guidance_scale < 0:
        raise UserInputError(f"--guidance_scale must be >= 0, got {args.guidance_scale}")
    if getattr(args, "class_labels", None) and any(c < 0 for c in args.class_labels):
        raise UserInputError(f"--class_labels must be >= 0, got {args.class_labels}")


def sample_labels(args: argparse.Namespace, meta: dict) -> list:
    """One entry per image, grouped in rows of --num_samples: the requested classes (default: every class the
    model has seen), the prompts, or None for unconditional models."""
    n = args.num_samples
    if meta["conditioning"] == "class":
        seen = sorted({c for t in meta["seen_tasks"] for c in meta["classes_per_task"][str(t)]})
        classes = args.class_labels or seen
        bad = [c for c in classes if c >= meta["num_classes"]]
        if bad:
            raise UserInputError(f"--class_labels {bad} out of range: the model has {meta['num_classes']} classes")
        return [c for c in classes for _ in range(n)]
    if meta["conditioning"] == "text":
        prompts = args.validation_prompts or meta.get("validation_prompts")
        if not prompts:
            raise UserInputError("a text model needs --validation_prompts")
        return [p for p in prompts for _ in range(n)]
    if args.class_labels or args.validation_prompts:
        raise UserInputError("this model is unconditional: drop --class_labels / --validation_prompts")
    return [None] * n


def sampler_options(args: argparse.Namespace, meta: dict):
    from ..sampling.generate import SamplerOptions

    guidance = args.guidance_scale if meta.get("classifier_free_guidance") else 1.0
    return SamplerOptions(args.scheduler, args.num_inference_steps, guidance, args.sampling_batch_size, args.seed)
