#!/usr/bin/env python
"""Sample from a trained task model (its saved config: no architecture flags) and write the images to disk: a CLI
over `ContinualDiffusionPipeline` (the same seed gives the same images as `pipe(..., generator=seed)`).

    python evaluate.py --model_path outputs/demo/task_5                     # 8 samples of every class seen so far
    python evaluate.py --model_path outputs/demo/task_5 --class_labels 0 1 --num_samples 16 --guidance_scale 3
    python evaluate.py --model_path outputs/clip/task_2 --validation_prompts "a photo of a cat"
    python evaluate.py --model_path outputs/ldm/task_2 --validation_prompts "a cat" --negative_prompt "blurry" \
        --guidance_scale 7.5                                                # latent models decode with their VAE
    python evaluate.py --model_path outputs/ldm/task_2 --validation_prompts "a cat | a hat" \
        --weights_prompt "7.5 | -2"                                         # composed prompt: "a cat, no hat"
    python evaluate.py --model_path outputs/energy/task_2 --mcmc_sampler CHA --num_samples_per_step 3
    python evaluate.py --model_path outputs/demo/task_5 --composition_pipeline --composition_labels 2,3 \
        --composition_weights=3,-1                                          # "2 and not 3"
    python evaluate.py --model_path outputs/slots/task_2 --slot_mode masks  # slot models: masks | reconstruct |
    python evaluate.py --model_path outputs/slots/task_2 --slot_mode compose --compose_slots 0 5   # compose
    accelerate launch --num_processes 2 evaluate.py ...                     # chunks split across processes

Writes to --output_dir: samples.png (one row per label), samples.npz (uint8 NHWC images + labels, no pickle),
samples/<i>_<label>.png, and run.json (what was run: sampler, steps, seed, MCMC acceptance per timestep, ...).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from continual_diffusers import cli
from continual_diffusers.cli import sampling as sampling_cli
from continual_diffusers.cli import slots as slots_cli
from continual_diffusers.utils import bounds
from continual_diffusers.utils.entrypoint import run_main
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger

logger = get_logger("evaluate")


def parser():
    p = cli.new_parser("Sample from an exported task model (output_dir/task_<k>/) and write the images to disk.")
    g = p.add_argument_group("Model")
    g.add_argument(
        "--model_path",
        "--model_config_name_or_path",
        dest="model_path",
        required=True,
        help="an exported task folder, e.g. outputs/demo/task_3",
    )
    g.add_argument(
        "--ema",
        choices=["auto", "yes", "no"],
        default="auto",
        help="the EMA weights (unet/ of an EMA run; unet_ema/ of older exports) or the training weights "
        "(unet_training/); auto: EMA if the model was trained with it",
    )
    sampling_cli.add_sampler_args(p)
    sampling_cli.add_generation_args(p)
    slots_cli.add_slot_args(p)
    g = p.add_argument_group("Prompts", "text models (pixel or latent)")
    g.add_argument(
        "--negative_prompt",
        nargs="+",
        default=None,
        help="replaces the empty prompt in guidance: one for all prompts, or one per --validation_prompts",
    )
    g.add_argument(
        "--weights_prompt",
        default=None,
        help='composition weights "w1 | w2" for a prompt "p1 | p2" (negative weights negate; '
        "default: --guidance_scale each)",
    )
    g = p.add_argument_group("Output")
    g.add_argument("--output_dir", default=None, help="default: <model_path>/eval")
    g.add_argument(
        "--seed", type=bounds.SEED, default=0, help="seeds the sampling noise (the same seed gives the same images)"
    )
    g.add_argument("--no_progress", dest="progress", action="store_false", help="hide the progress bar")
    return p


def _gather(state, generated, out: str):
    """Merge the chunks and acceptance counts of every process on the main process (via files in `out`)."""
    import torch

    if state.num_processes == 1:
        return generated
    part = os.path.join(out, f".part_{state.process_index}.pt")
    torch.save(
        {
            "chunks": generated.chunks,
            "sum": dict(generated.acceptance_sum),
            "n": dict(generated.num_chains),
            "evals": generated.num_grad_evals,
        },
        part,
    )
    state.wait_for_everyone()
    if state.is_main_process:
        for rank in range(1, state.num_processes):
            path = os.path.join(out, f".part_{rank}.pt")
            other = torch.load(path, weights_only=True)
            generated.chunks.update(other["chunks"])
            for t, n in other["n"].items():
                generated.acceptance_sum[t] += other["sum"][t]
                generated.num_chains[t] += n
            generated.num_grad_evals += other["evals"]
            os.remove(path)
        os.remove(part)
    return generated


def prompt_composition(args, meta: dict) -> None:
    """A prompt "p1 | p2" (with optional --weights_prompt "w1 | w2") becomes the composition of p1 and p2."""
    prompts = args.validation_prompts or []
    if args.weights_prompt is None and not any("|" in p for p in prompts):
        return
    if meta["conditioning"] != "text":
        raise UserInputError('"p1 | p2" prompts and --weights_prompt need a text-conditioned model')
    if args.composition_pipeline or args.composition_labels:
        raise UserInputError('compose with either a "p1 | p2" prompt or --composition_pipeline, not both')
    if len(prompts) != 1:
        raise UserInputError(f'compose one "p1 | p2" prompt at a time, got {len(prompts)} --validation_prompts')
    concepts = [p.strip() for p in prompts[0].split("|")]
    if args.weights_prompt is not None:
        weights = sampling_cli.parse_weights(args.weights_prompt, "--weights_prompt", "|")
        if len(weights) != len(concepts):
            raise UserInputError(
                f"--weights_prompt has {len(weights)} weights for {len(concepts)} prompts in {prompts[0]!r}"
            )
        args.composition_weights = ",".join(str(w) for w in weights)
    args.composition_pipeline, args.composition_labels = True, "|".join(concepts)
    args.validation_prompts = None


def run(args) -> str:
    """Everything is validated (flags, the exported model, the labels, the output folder) before the first write."""
    from accelerate import PartialState

    from continual_diffusers.evaluation.generate import write_samples
    from continual_diffusers.pipelines import ContinualDiffusionPipeline, negative_prompts
    from continual_diffusers.training.checkpoint import check_writable

    cli.check_sampler_ranges(args)
    state = PartialState()
    use_ema = {"auto": None, "yes": True, "no": False}[args.ema]
    pipe = ContinualDiffusionPipeline.from_pretrained(args.model_path, use_ema, state.device)
    meta, scheduler = pipe.metadata, pipe.scheduler
    out = args.output_dir or os.path.join(args.model_path, "eval")
    if args.slot_mode:
        return _run_slot_mode(args, pipe.denoiser, pipe.conditioning, scheduler, meta, state, out)
    prompt_composition(args, meta)
    labels = sampling_cli.sample_labels(args, meta)
    options = sampling_cli.sampler_options(args, meta)
    last_t = check_schedule_fits(args, scheduler)
    if options.mcmc is not None and options.mcmc.start_timestep > last_t:
        raise UserInputError(
            f"--mcmc_sampler_start_timestep {options.mcmc.start_timestep} is above the model's last timestep {last_t}:"
            " MCMC would never run"
        )
    rows = list(dict.fromkeys(labels))  # labels come in rows of --num_samples images
    null_labels = negative_prompts(args.negative_prompt, rows, len(labels) // len(rows), meta, options, flag="--")
    options = dataclasses.replace(options, progress=args.progress and state.is_main_process)
    check_writable(out)
    num_chunks = -(-len(labels) // options.batch_size)
    mine = list(range(state.process_index, num_chunks, state.num_processes))
    generated = pipe.generate(labels, options, mine, null_labels)
    generated = _gather(state, generated, out)
    if state.is_main_process:
        write_samples(out, generated.images(), labels, args.num_samples)
        _write_run_json(out, args, options, generated, labels, state.num_processes)
        logger.info("wrote %d samples to %s", len(labels), out)
    return out


def _run_slot_mode(args, model, conditioning, scheduler, meta: dict, state, out: str) -> str:
    """--slot_mode: one process (the source images are few), sheets + run.json in the output folder (created once
    the inputs are validated)."""
    if state.num_processes > 1:
        raise UserInputError("--slot_mode runs in one process; launch evaluate.py without accelerate")
    if args.composition_pipeline:
        raise UserInputError(
            "slot models compose with --slot_mode compose --compose_slots, not --composition_pipeline"
        )
    options = dataclasses.replace(sampling_cli.sampler_options(args, meta), progress=args.progress)
    check_schedule_fits(args, scheduler)
    record = slots_cli.run_slot_mode(args, model, conditioning, scheduler, meta, options, state.device, out)
    slots_cli.write_record(out, dict(record, model_path=str(args.model_path), seed=args.seed), options)
    return out


def check_schedule_fits(args, scheduler) -> int:
    """--num_inference_steps within the model's training schedule; returns its last timestep."""
    num_train_timesteps = scheduler.config.num_train_timesteps
    sampling_cli.check_inference_steps(args, num_train_timesteps, f"{args.model_path}/scheduler")
    return num_train_timesteps - 1


def _write_run_json(out: str, args, options, generated, labels: list, num_processes: int) -> None:
    rates = generated.acceptance_rates()
    record = {
        "model_path": str(args.model_path),
        "ema": args.ema,
        "seed": args.seed,
        "num_processes": num_processes,
        "num_images": len(labels),
        "rows": list(dict.fromkeys("uncond" if x is None else str(x) for x in labels)),
        "scheduler": options.scheduler,
        "num_inference_steps": options.num_inference_steps,
        "guidance_scale": options.guidance_scale,
        "batch_size": options.batch_size,
        "negative_prompt": args.negative_prompt,
        "mcmc": None if options.mcmc is None else dataclasses.asdict(options.mcmc),
        "composition": None if options.composition is None else dataclasses.asdict(options.composition),
        "acceptance_rate_per_timestep": {str(t): r for t, r in rates.items()},
        "mean_acceptance_rate": sum(rates.values()) / len(rates) if rates else None,
        "num_mcmc_grad_evals": generated.num_grad_evals,
    }
    with open(os.path.join(out, "run.json"), "w") as fh:
        json.dump(record, fh, indent=2)
    if rates:
        logger.info(
            "MCMC %s: mean acceptance %.3f over %d timesteps",
            options.mcmc.sampler,
            record["mean_acceptance_rate"],
            len(rates),
        )


def main(argv: list[str] | None = None) -> int:
    return run_main(parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
