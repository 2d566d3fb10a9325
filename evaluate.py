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

Writes to --output_dir (default: eval/<task folder> next to the model, e.g. outputs/run/eval/task_3): samples.png
(one row per label), samples.npz (uint8 NHWC images + labels, no pickle), samples/<i>_<label>.png, and run.json
(what was run: sampler, steps, seed, MCMC acceptance per timestep, ...).
`--config flags.json` reads flag values from a JSON object ({"model_path": ..., "guidance_scale": 3}).
"""

from __future__ import annotations

import dataclasses
import json
import os

from continual_diffusers.cli.base import build_parser
from continual_diffusers.config import generation as gen
from continual_diffusers.config.generation import SampleRequest
from continual_diffusers.config.sampling import (
    AnnealedMCMCConfig,
    CompositionConfig,
    ExportConfig,
    LabelsConfig,
    OutputConfig,
    PromptsConfig,
    SamplingConfig,
    SlotModeConfig,
)
from continual_diffusers.utils.entrypoint import exit_process, run_main
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger
from continual_diffusers.utils.options import from_args

logger = get_logger("evaluate")
GROUPS = (
    ExportConfig,
    SamplingConfig,
    LabelsConfig,
    AnnealedMCMCConfig,
    CompositionConfig,
    SlotModeConfig,
    PromptsConfig,
)


def parser():
    return build_parser(
        "Sample from an exported task model (output_dir/task_<k>/) and write the images to disk.",
        *GROUPS,
        OutputConfig,
    )


def generation(args) -> SampleRequest:
    """The sampling request, validated, from the parsed flags."""
    parts = [from_args(cls, args) for cls in (SamplingConfig, LabelsConfig, AnnealedMCMCConfig, CompositionConfig)]
    output = from_args(OutputConfig, args)
    return SampleRequest(*parts, seed=output.seed, progress=output.progress)


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


def prompt_composition(g: SampleRequest, prompts_config: PromptsConfig, conditioning) -> SampleRequest:
    """A prompt "p1 | p2" (with optional --weights_prompt "w1 | w2") becomes the composition of p1 and p2: the
    request with that composition instead of the prompt."""
    prompts, weights_prompt, composition = (
        g.sampling.validation_prompts or [],
        prompts_config.weights_prompt,
        g.composition,
    )
    if weights_prompt is None and not any("|" in p for p in prompts):
        return g
    if conditioning.call_argument != "prompt":
        raise UserInputError('"p1 | p2" prompts and --weights_prompt need a text-conditioned model')
    if composition.composition_pipeline or composition.composition_labels:
        raise UserInputError('compose with either a "p1 | p2" prompt or --composition_pipeline, not both')
    if len(prompts) != 1:
        raise UserInputError(f'compose one "p1 | p2" prompt at a time, got {len(prompts)} --validation_prompts')
    concepts = [p.strip() for p in prompts[0].split("|")]
    weights = composition.composition_weights
    if weights_prompt is not None:
        parsed = gen.parse_weights(weights_prompt, "--weights_prompt", "|")
        if len(parsed) != len(concepts):
            raise UserInputError(
                f"--weights_prompt has {len(parsed)} weights for {len(concepts)} prompts in {prompts[0]!r}"
            )
        weights = ",".join(str(w) for w in parsed)
    composition = dataclasses.replace(
        composition, composition_pipeline=True, composition_labels="|".join(concepts), composition_weights=weights
    )
    sampling = dataclasses.replace(g.sampling, validation_prompts=None)
    return dataclasses.replace(g, sampling=sampling, composition=composition)


def run(args) -> str:
    """Everything is validated (flags, the exported model, the labels, the output folder) before the first write."""
    from accelerate import PartialState

    from continual_diffusers.evaluation.generate import write_samples
    from continual_diffusers.pipelines import ContinualDiffusionPipeline
    from continual_diffusers.pipelines.labels import negative_prompts
    from continual_diffusers.utils.files import check_writable

    g, export, slot = generation(args), from_args(ExportConfig, args), from_args(SlotModeConfig, args)
    prompts = from_args(PromptsConfig, args)
    state = PartialState()
    use_ema = {"auto": None, "yes": True, "no": False}[export.ema]
    pipe = ContinualDiffusionPipeline.from_pretrained(export.model_path, use_ema, state.device)
    spec, conditioning, scheduler = pipe.spec, pipe.conditioning, pipe.scheduler
    out = from_args(OutputConfig, args).output_dir or default_output_dir(export.model_path)
    if slot.slot_mode:
        return _run_slot_mode(g, slot, export, pipe.denoiser, conditioning, scheduler, spec, state, out)
    g = prompt_composition(g, prompts, conditioning)
    labels = gen.sample_labels(g, conditioning, spec)
    options = gen.sampler_options(g, conditioning, spec)
    last_t = check_schedule_fits(g.sampling, export, scheduler)
    if options.mcmc is not None and options.mcmc.start_timestep > last_t:
        raise UserInputError(
            f"--mcmc_sampler_start_timestep {options.mcmc.start_timestep} is above the model's last timestep {last_t}:"
            " MCMC would never run"
        )
    rows = list(dict.fromkeys(labels))  # labels come in rows of --num_samples images
    null_labels = negative_prompts(
        prompts.negative_prompt, rows, len(labels) // len(rows), conditioning, options, flag="--"
    )
    options = dataclasses.replace(options, progress=g.progress and state.is_main_process)
    check_writable(out)
    num_chunks = -(-len(labels) // options.batch_size)
    mine = list(range(state.process_index, num_chunks, state.num_processes))
    generated = pipe.generate(labels, options, mine, null_labels)
    generated = _gather(state, generated, out)
    if state.is_main_process:
        write_samples(out, generated.images(), labels, g.sampling.num_samples, spec)
        _write_run_json(out, export, prompts, options, generated, labels, state.num_processes)
        print(f"wrote {len(labels)} samples to {out}")
    return out


def default_output_dir(model_path: str) -> str:
    """Where evaluate.py writes without --output_dir: next to the model, never inside it (a task folder is a
    pipeline that is loaded and uploaded as it is): outputs/run/task_3 → outputs/run/eval/task_3."""
    model = os.path.normpath(model_path)
    return os.path.join(os.path.dirname(model), "eval", os.path.basename(model))


def _run_slot_mode(g, slot, export, model, conditioning, scheduler, spec, state, out: str) -> str:
    """--slot_mode: one process (the source images are few), sheets + run.json in the output folder (created once
    the inputs are validated)."""
    from continual_diffusers.evaluation import slot_modes

    if state.num_processes > 1:
        raise UserInputError("--slot_mode runs in one process; launch evaluate.py without accelerate")
    if g.composition.composition_pipeline:
        raise UserInputError(
            "slot models compose with --slot_mode compose --compose_slots, not --composition_pipeline"
        )
    options = dataclasses.replace(gen.sampler_options(g, conditioning, spec), progress=g.progress)
    check_schedule_fits(g.sampling, export, scheduler)
    record = slot_modes.run_slot_mode(slot, g, model, conditioning, scheduler, spec, options, state.device, out)
    slot_modes.write_record(out, dict(record, model_path=str(export.model_path), seed=g.seed), options)
    print(f"wrote the {slot.slot_mode} sheets to {out}")
    return out


def check_schedule_fits(sampling: SamplingConfig, export: ExportConfig, scheduler) -> int:
    """--num_inference_steps within the model's training schedule; returns its last timestep."""
    sampling.check_schedule(scheduler.config, f"{export.model_path}/scheduler")
    return scheduler.config.num_train_timesteps - 1


def _write_run_json(out: str, export, prompts, options, generated, labels: list, num_processes: int) -> None:
    rates = generated.acceptance_rates()
    record = {
        "model_path": str(export.model_path),
        "ema": export.ema,
        "seed": options.seed,
        "num_processes": num_processes,
        "num_images": len(labels),
        "rows": list(dict.fromkeys("uncond" if x is None else str(x) for x in labels)),
        "scheduler": options.scheduler,
        "num_inference_steps": options.num_inference_steps,
        "guidance_scale": options.guidance_scale,
        "batch_size": options.batch_size,
        "negative_prompt": prompts.negative_prompt,
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
    exit_process(main())
