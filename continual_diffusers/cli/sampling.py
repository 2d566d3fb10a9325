"""Sampling flags and their conversion. `add_sampler_args` is shared by end-of-task validation (main_ddpm) and
evaluate.py; `add_generation_args` (labels, annealed MCMC, composition) is added by evaluate.py only."""

from __future__ import annotations

import argparse

from ..sampling.ancestral import DEFAULT_NUM_INFERENCE_STEPS, DEFAULT_SCHEDULER, SCHEDULERS
from ..sampling.mcmc import KERNELS
from ..utils import bounds as b
from ..utils.errors import UserInputError


def add_sampler_args(parser: argparse.ArgumentParser) -> None:
    """Sampling flags shared by end-of-task validation (main_ddpm) and evaluate.py."""
    g = parser.add_argument_group("Sampling", "ancestral sampling over a diffusers scheduler")
    g.add_argument(
        "--scheduler",
        choices=sorted(SCHEDULERS),
        default=DEFAULT_SCHEDULER,
        help="sampling scheduler (ddpm with few steps is strided ancestral sampling; the others are ODE solvers "
        "except euler_a and dpm++_sde)",
    )
    g.add_argument(
        "--num_inference_steps",
        "--ddpm_num_inference_steps",
        dest="num_inference_steps",
        type=b.TIMESTEPS,
        default=DEFAULT_NUM_INFERENCE_STEPS,
        help="sampling steps",
    )
    g.add_argument(
        "--ddim_eta",
        type=b.UNIT,
        default=0.0,
        help="DDIM's η in [0, 1] (--scheduler ddim only): 0 deterministic, 1 the ancestral DDPM variance",
    )
    g.add_argument(
        "--guidance_scale",
        type=b.NON_NEGATIVE,
        default=2.0,
        help="CFG scale w ≥ 0 (1: no guidance; used only for models trained with CFG)",
    )
    g.add_argument(
        "--num_samples",
        "--eval_batch_size",
        dest="num_samples",
        type=b.IMAGES_PER_ROW,
        default=8,
        help="images per class / prompt (one grid row each)",
    )
    g.add_argument("--validation_prompts", nargs="+", default=None, help="prompts for text models")


def add_generation_args(parser: argparse.ArgumentParser) -> None:
    """evaluate.py only: which labels, annealed MCMC and composition."""
    g = parser.add_argument_group("Labels")
    g.add_argument(
        "--class_labels",
        type=b.CLASS_ID,
        nargs="+",
        default=None,
        help="classes to sample (class models); default: every class the model has seen",
    )
    g.add_argument("--sampling_batch_size", type=b.BATCH_SIZE, default=64, help="images per sampling chunk")
    g = parser.add_argument_group(
        "Annealed MCMC",
        "K kernel steps at the sample's own noise level t, inside the "
        "ancestral loop; step η_t = multiplier·β_t, mass m_t = β_t",
    )
    g.add_argument(
        "--mcmc_sampler",
        choices=sorted(KERNELS),
        default=None,
        help="ULA/UHA: any model; MALA/CHA (Metropolis-corrected, CHA = HMC): energy models only",
    )
    g.add_argument(
        "--mcmc_sampler_start_timestep",
        type=b.NON_NEGATIVE,
        default=50,
        help="MCMC runs at the timesteps t ≥ this value (training units 0…T−1, as upstream: the noisy "
        "part, from T−1 down to this value)",
    )
    g.add_argument(
        "--mcmc_sampler_max_timestep",
        type=b.NON_NEGATIVE,
        default=None,
        help="… and t ≤ this value (default: no upper bound)",
    )
    g.add_argument("--num_samples_per_step", type=b.INNER_STEPS, default=1, help="K kernel steps per noise level")
    g.add_argument("--step_sizes_multiplier", type=b.POSITIVE, default=0.1, help="η_t (or leapfrog ε_t) = value · β_t")
    g.add_argument("--damping_coeff", type=b.UNIT, default=0.9, help="UHA/CHA momentum damping γ ∈ [0, 1]")
    g.add_argument("--num_leapfrog_steps", type=b.INNER_STEPS, default=3, help="UHA/CHA leapfrog steps L")
    g = parser.add_argument_group("Composition", "ε = ε_∅ + Σ_k w_k(ε_k − ε_∅) (energies alike); w_k < 0 negates")
    g.add_argument(
        "--composition_pipeline", action="store_true", help="sample the composition of --composition_labels"
    )
    g.add_argument(
        "--composition_labels",
        default=None,
        help='class models: comma-separated ids, e.g. "2,3"; text models: prompts separated by "|"',
    )
    g.add_argument(
        "--composition_weights",
        default=None,
        help='comma-separated w_k; write "--composition_weights=3,-1" when one is negative '
        "(default: --guidance_scale each; 1 each without CFG)",
    )
    g.add_argument(
        "--composition_mode",
        choices=["product", "mixture"],
        default="product",
        help="mixture: Σ_k w_k p̃_k (energy models only; weights must be > 0)",
    )
    g.add_argument("--mixture_temperature", type=b.POSITIVE, default=1.0, help="mixture temperature τ (1: exact)")


def check_sampler_ranges(args: argparse.Namespace) -> None:
    """Sampling flags that must agree with each other (each flag's own bounds are checked when it is parsed:
    utils/bounds.py)."""
    if args.ddim_eta and args.scheduler != "ddim":
        raise UserInputError(f"--ddim_eta {args.ddim_eta:g} applies to --scheduler ddim, not {args.scheduler}")
    start, stop = getattr(args, "mcmc_sampler_start_timestep", 0), getattr(args, "mcmc_sampler_max_timestep", None)
    if stop is not None and stop < start:
        raise UserInputError(
            f"--mcmc_sampler_max_timestep {stop:g} is below --mcmc_sampler_start_timestep {start:g}: "
            "MCMC would never run"
        )


def check_inference_steps(args: argparse.Namespace, num_train_timesteps: int, source: str) -> None:
    """--num_inference_steps cannot exceed the training schedule's T (`source` says where T comes from)."""
    if args.num_inference_steps > num_train_timesteps:
        raise UserInputError(
            f"--num_inference_steps {args.num_inference_steps} exceeds the {num_train_timesteps} training timesteps "
            f"of {source}"
        )


def sample_labels(args: argparse.Namespace, meta: dict) -> list:
    """One entry per image, grouped in rows of --num_samples: the requested classes (default: every class the
    model has seen), the prompts, or None for unconditional models. With --composition_pipeline: one row named
    after the composition."""
    n = args.num_samples
    if getattr(args, "composition_pipeline", False):
        concepts, weights = composition_concepts(args, meta)
        return [" ".join(f"{w:+g}*{c}" for c, w in zip(concepts, weights))] * n
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


def parse_weights(text: str, flag: str, sep: str = ",") -> list[float]:
    """Composition weights "w1,w2" (finite; negative weights negate a concept)."""
    try:
        weights = [float(v) for v in text.split(sep)]
    except ValueError:
        raise UserInputError(f"{flag} must be numbers separated by {sep!r}, got {text!r}") from None
    return [b.FINITE.check(flag, w) for w in weights]


def composition_concepts(args: argparse.Namespace, meta: dict) -> tuple[list, list[float]]:
    """(K concepts, K weights) from --composition_labels / --composition_weights, validated against the model."""
    kind, text = meta["conditioning"], args.composition_labels
    if kind == "none":
        raise UserInputError("--composition_pipeline needs a class- or text-conditioned model")
    if not text:
        raise UserInputError('--composition_pipeline needs --composition_labels (e.g. "2,3", or "p1|p2" for text)')
    if args.class_labels:
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
    default = args.guidance_scale if meta.get("classifier_free_guidance") else 1.0
    weights = parse_weights(args.composition_weights, "--composition_weights") if args.composition_weights else None
    weights = weights or [default] * len(concepts)
    if len(weights) != len(concepts):
        raise UserInputError(f"--composition_weights has {len(weights)} values for {len(concepts)} concepts")
    return concepts, weights


def mcmc_config(args: argparse.Namespace, meta: dict):
    """The annealed-MCMC settings, or None without --mcmc_sampler."""
    from ..sampling.annealed import MCMCConfig

    if getattr(args, "mcmc_sampler", None) is None:
        return None
    config = MCMCConfig(
        args.mcmc_sampler,
        args.num_samples_per_step,
        args.step_sizes_multiplier,
        args.num_leapfrog_steps,
        args.damping_coeff,
        args.mcmc_sampler_start_timestep,
        args.mcmc_sampler_max_timestep,
    )
    if config.needs_energy and not meta.get("energy_type"):
        raise UserInputError(
            f"--mcmc_sampler {args.mcmc_sampler} needs an energy model (log p̃ = −E/σ_t); "
            "this is a score model: use ULA or UHA"
        )
    return config


def sampler_options(args: argparse.Namespace, meta: dict):
    from ..sampling.generate import CompositionOptions, SamplerOptions

    guidance = args.guidance_scale if meta.get("classifier_free_guidance") else 1.0
    composition = None
    if getattr(args, "composition_pipeline", False):
        concepts, weights = composition_concepts(args, meta)
        if args.composition_mode == "mixture" and not meta.get("energy_type"):
            raise UserInputError("--composition_mode mixture needs an energy model")
        composition = CompositionOptions(
            tuple(concepts), tuple(weights), args.composition_mode, args.mixture_temperature
        )
    return SamplerOptions(
        args.scheduler,
        args.num_inference_steps,
        guidance,
        args.sampling_batch_size,
        args.seed,
        mcmc_config(args, meta),
        composition,
        progress=getattr(args, "progress", False),
        eta=args.ddim_eta,
    )
