"""evaluate.py's sampling request as one typed object (`Generation`: the sampler, labels, annealed MCMC and
composition configs) and its conversion, against an exported model's metadata, into the images' labels and the
library's `SamplerOptions` (with `MCMCConfig` and `CompositionOptions`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..utils import bounds as b
from ..utils.errors import UserInputError
from .sampling import CompositionFlags, LabelsConfig, MCMCFlags, SamplingConfig


@dataclass(frozen=True)
class Generation:
    """evaluate.py's sampling request: the sampler, the labels, annealed MCMC, the composition; `seed`, `progress`."""

    sampling: SamplingConfig
    labels: LabelsConfig
    mcmc: MCMCFlags
    composition: CompositionFlags
    seed: int = 0
    progress: bool = False


def sample_labels(g: Generation, meta: dict) -> list:
    """One entry per image, grouped in rows of --num_samples: the requested classes (default: every class the
    model has seen), the prompts, or None for unconditional models. With --composition_pipeline: one row named
    after the composition."""
    n, prompts, class_labels = g.sampling.num_samples, g.sampling.validation_prompts, g.labels.class_labels
    if g.composition.composition_pipeline:
        concepts, weights = composition_concepts(g, meta)
        return [" ".join(f"{w:+g}*{c}" for c, w in zip(concepts, weights))] * n
    if meta["conditioning"] == "class":
        seen = sorted({c for t in meta["seen_tasks"] for c in meta["classes_per_task"][str(t)]})
        classes = class_labels or seen
        bad = [c for c in classes if c >= meta["num_classes"]]
        if bad:
            raise UserInputError(f"--class_labels {bad} out of range: the model has {meta['num_classes']} classes")
        return [c for c in classes for _ in range(n)]
    if meta["conditioning"] == "text":
        prompts = prompts or meta.get("validation_prompts")
        if not prompts:
            raise UserInputError("a text model needs --validation_prompts")
        return [p for p in prompts for _ in range(n)]
    if class_labels or prompts:
        raise UserInputError("this model is unconditional: drop --class_labels / --validation_prompts")
    return [None] * n


def parse_weights(text: str, flag: str, sep: str = ",") -> list[float]:
    """Composition weights "w1,w2" (finite; negative weights negate a concept)."""
    try:
        weights = [float(v) for v in text.split(sep)]
    except ValueError:
        raise UserInputError(f"{flag} must be numbers separated by {sep!r}, got {text!r}") from None
    return [b.FINITE.check(flag, w) for w in weights]


def composition_concepts(g: Generation, meta: dict) -> tuple[list, list[float]]:
    """(K concepts, K weights) from --composition_labels / --composition_weights, validated against the model."""
    kind, text, composition = meta["conditioning"], g.composition.composition_labels, g.composition
    if kind == "none":
        raise UserInputError("--composition_pipeline needs a class- or text-conditioned model")
    if not text:
        raise UserInputError('--composition_pipeline needs --composition_labels (e.g. "2,3", or "p1|p2" for text)')
    if g.labels.class_labels:
        raise UserInputError("--class_labels and --composition_pipeline exclude each other")
    if kind == "class":
        try:
            concepts = [int(v) for v in text.split(",")]
        except ValueError:
            raise UserInputError(f"--composition_labels must be comma-separated class ids, got {text!r}") from None
        bad = [c for c in concepts if not 0 <= c < meta["num_classes"]]
        if bad:
            raise UserInputError(f"--composition_labels {bad} out of range [0, {meta['num_classes']})")
    else:
        concepts = [p.strip() for p in text.split("|")]
    weights = composition_weights(composition, len(concepts), guidance(g.sampling, meta))
    return concepts, weights


def composition_weights(composition: CompositionFlags, count: int, default: float, what: str = "concepts"):
    """--composition_weights for `count` concepts (default: `default` each)."""
    if not composition.composition_weights:
        return [default] * count
    weights = parse_weights(composition.composition_weights, "--composition_weights")
    if len(weights) != count:
        raise UserInputError(f"--composition_weights has {len(weights)} values for {count} {what}")
    return weights


def guidance(sampling: SamplingConfig, meta: dict) -> float:
    """--guidance_scale for models trained with CFG, 1 (no guidance) otherwise."""
    return sampling.guidance_scale if meta.get("classifier_free_guidance") else 1.0


def mcmc_config(flags: MCMCFlags, meta: dict):
    """The annealed-MCMC settings, or None without --mcmc_sampler."""
    from ..sampling.annealed import MCMCConfig  # imported on use: evaluate.py --help stays light

    if flags.mcmc_sampler is None:
        return None
    config = MCMCConfig(
        flags.mcmc_sampler,
        flags.num_samples_per_step,
        flags.step_sizes_multiplier,
        flags.num_leapfrog_steps,
        flags.damping_coeff,
        flags.mcmc_sampler_start_timestep,
        flags.mcmc_sampler_max_timestep,
    )
    if config.needs_energy and not meta.get("energy_type"):
        raise UserInputError(
            f"--mcmc_sampler {flags.mcmc_sampler} needs an energy model (log p̃ = −E/σ_t); "
            "this is a score model: use ULA or UHA"
        )
    return config


def sampler_options(g: Generation, meta: dict):
    from ..sampling.generate import CompositionOptions, SamplerOptions

    composition, flags = None, g.composition
    if flags.composition_pipeline:
        concepts, weights = composition_concepts(g, meta)
        if flags.composition_mode == "mixture" and not meta.get("energy_type"):
            raise UserInputError("--composition_mode mixture needs an energy model")
        composition = CompositionOptions(
            tuple(concepts), tuple(weights), flags.composition_mode, flags.mixture_temperature
        )
    return SamplerOptions(
        g.sampling.scheduler,
        g.sampling.num_inference_steps,
        guidance(g.sampling, meta),
        g.labels.sampling_batch_size,
        g.seed,
        mcmc_config(g.mcmc, meta),
        composition,
        progress=g.progress,
        eta=g.sampling.ddim_eta,
    )
