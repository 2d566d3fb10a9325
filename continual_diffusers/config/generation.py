"""evaluate.py's sampling request as one typed object (`SampleRequest`: the sampler, labels, annealed MCMC and
composition configs) and its conversion, against an exported model (its `Conditioning` and `ModelSpec`), into the
images' labels and the library's `SamplerOptions` (with `MCMCOptions` and `CompositionOptions`). What a kind's labels
are is the kind's (`Conditioning.rows`, `.concepts`); the rows are parsed as the pipeline parses them
(`pipelines.labels`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..models.conditioning.base import NOT_COMPOSABLE
from ..utils import bounds as b
from ..utils.errors import UserInputError
from .sampling import AnnealedMCMCConfig, CompositionConfig, LabelsConfig, SamplingConfig


@dataclass(frozen=True)
class SampleRequest:
    """evaluate.py's sampling request: the sampler, the labels, annealed MCMC, the composition; `seed`, `progress`."""

    sampling: SamplingConfig
    labels: LabelsConfig
    mcmc: AnnealedMCMCConfig
    composition: CompositionConfig
    seed: int = 0
    progress: bool = False


# evaluate.py's flag for each of the pipeline's label keywords (`Conditioning.call_argument`).
FLAG_NAMES = {
    "class_labels": "--class_labels",
    "prompt": "--validation_prompts",
    "slots": "--slot_mode (reconstruct, masks or compose)",
}


def sample_labels(g: SampleRequest, conditioning, spec) -> list:
    """One entry per image, grouped in rows of --num_samples: the requested classes (default: every class the
    model has seen), the prompts, or None for unconditional models. With --composition_pipeline: one row named
    after the composition."""
    from ..pipelines.labels import composition_row, label_rows

    n = g.sampling.num_samples
    if g.composition.composition_pipeline:
        concepts, weights = composition_concepts(g, conditioning, spec)
        return [composition_row(concepts, weights)] * n
    given = {"class_labels": g.labels.class_labels, "prompt": g.sampling.validation_prompts}
    rows = label_rows(conditioning, spec, given, FLAG_NAMES)
    return [row for row in rows for _ in range(n)]


def parse_weights(text: str, flag: str, sep: str = ",") -> list[float]:
    """Composition weights "w1,w2" (finite; negative weights negate a concept)."""
    try:
        weights = [float(v) for v in text.split(sep)]
    except ValueError:
        raise UserInputError(f"{flag} must be numbers separated by {sep!r}, got {text!r}") from None
    return [b.FINITE.check(flag, w) for w in weights]


def composition_concepts(g: SampleRequest, conditioning, spec) -> tuple[list, list[float]]:
    """(K concepts, K weights) from --composition_labels / --composition_weights, validated against the model
    (`Conditioning.concepts`: class ids "2,3", prompts "p1|p2")."""
    text, composition = g.composition.composition_labels, g.composition
    if not conditioning.conditional:
        raise UserInputError(NOT_COMPOSABLE.format(conditioning.description))
    if not text:
        raise UserInputError('--composition_pipeline needs --composition_labels (e.g. "2,3", or "p1|p2" for text)')
    if g.labels.class_labels:
        raise UserInputError("--class_labels and --composition_pipeline exclude each other")
    concepts = conditioning.concepts(spec, text, "--composition_labels")
    weights = composition_weights(composition, len(concepts), guidance(g.sampling, spec))
    return concepts, weights


def composition_weights(composition: CompositionConfig, count: int, default: float, what: str = "concepts"):
    """--composition_weights for `count` concepts (default: `default` each)."""
    if not composition.composition_weights:
        return [default] * count
    weights = parse_weights(composition.composition_weights, "--composition_weights")
    if len(weights) != count:
        raise UserInputError(f"--composition_weights has {len(weights)} values for {count} {what}")
    return weights


def guidance(sampling: SamplingConfig, spec) -> float:
    """--guidance_scale for the model (`resolve_guidance`: the model's default when not given; a value ≠ 1 on a
    model trained without CFG refused)."""
    from ..sampling.generate import resolve_guidance

    return resolve_guidance(sampling.guidance_scale, spec.classifier_free_guidance, "--guidance_scale")


def mcmc_options(flags: AnnealedMCMCConfig, spec):
    """The annealed-MCMC settings, or None without --mcmc_sampler."""
    from ..sampling.annealed import MCMCOptions  # imported on use: evaluate.py --help stays light

    if flags.mcmc_sampler is None:
        return None
    config = MCMCOptions(
        flags.mcmc_sampler,
        flags.num_samples_per_step,
        flags.step_sizes_multiplier,
        flags.num_leapfrog_steps,
        flags.damping_coeff,
        flags.mcmc_sampler_start_timestep,
        flags.mcmc_sampler_max_timestep,
    )
    _check_energy(config, None, spec)
    return config


def sampler_options(g: SampleRequest, conditioning, spec):
    from ..sampling.generate import CompositionOptions, SamplerOptions

    composition, flags = None, g.composition
    if flags.composition_pipeline:
        concepts, weights = composition_concepts(g, conditioning, spec)
        _check_energy(None, flags.composition_mode, spec)
        composition = CompositionOptions(
            tuple(concepts), tuple(weights), flags.composition_mode, flags.mixture_temperature
        )
    return SamplerOptions(
        g.sampling.scheduler,
        g.sampling.num_inference_steps,
        guidance(g.sampling, spec),
        g.labels.sampling_batch_size,
        g.seed,
        mcmc_options(g.mcmc, spec),
        composition,
        progress=g.progress,
        eta=g.sampling.ddim_eta,
    )


def _check_energy(mcmc, composition_mode: str | None, spec) -> None:
    """Refuses, before the model is loaded, what only an energy model can sample (`energy_requirement`)."""
    from ..sampling.generate import energy_requirement

    needs = energy_requirement(mcmc, composition_mode)
    if needs is not None and not spec.energy_type:
        raise UserInputError(needs)
