"""Continual-strategy flags and the Namespace → strategy conversion.

Strategies are enabled with `--strategy NAME [NAME ...]` (keys of `STRATEGIES`) or with the earlier
implementation's flags: `--buffer_type …` enables replay and `--ewc_loss` enables EWC. Several enabled strategies
are combined (`CombinedStrategy`), e.g. `--ewc_loss --buffer_type reservoir --buffer_size 2000`.
"""

from __future__ import annotations

import argparse
from functools import partial

from ..data.buffer import AllData, NoData, ReplayBuffer, Reservoir, TaskBalanced
from ..data.transforms import ImageTransform
from ..sampling.ancestral import DEFAULT_SCHEDULER, SCHEDULERS
from ..strategies import (
    EWC,
    STRATEGIES,
    CombinedStrategy,
    ContinualStrategy,
    GenerativeReplay,
    Naive,
    Replay,
    SynapticIntelligence,
)
from ..strategies.generative_replay import DISTILLATION_INPUTS, TEACHERS
from ..utils import bounds as b
from ..utils.errors import UserInputError

# --buffer_type values: the earlier names (reservoir = task-balanced random subsets) plus clearer aliases.
BUFFER_POLICIES = {
    "no_data": "nothing is stored: plain fine-tuning",
    "all_data": "every sample of every past task: joint training (unbounded)",
    "reservoir": "the earlier name of task_balanced",
    "task_balanced": "--buffer_size slots split evenly over past tasks, a random subset of each",
    "stream_reservoir": "true reservoir sampling over the stream: each seen sample kept with equal probability",
}
# Defaults of options that belong to one strategy; setting one while that strategy is off is an error.
OWNED_DEFAULTS = {
    "replay": {
        "buffer_size": 1000,
        "retain_label_uniform_sampling": False,
        "replay_ratio": None,
        "replay_loss_weight": 1.0,
    },
    "ewc": {
        "lambda_ewc": 1.0,
        "ewc_mode": "separate",
        "ewc_gamma": 1.0,
        "num_samples_ewc": 100,
        "ewc_fisher_timesteps": 4,
        "ewc_fisher_batch_size": 8,
    },
    "si": {"si_lambda": 1.0, "si_epsilon": 0.1},
    "generative_replay": {
        "gr_num_inference_steps": 10,
        "gr_scheduler": DEFAULT_SCHEDULER,
        "gr_pool_size": 0,
        "gr_replay_ratio": 0.5,
        "gr_loss_weight": 1.0,
        "distillation_weight": 0.0,
        "distillation_inputs": "generated",
        "gr_teacher": "model",
    },
}
_DEFAULTS = {flag: value for defaults in OWNED_DEFAULTS.values() for flag, value in defaults.items()}


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def add_strategy_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Continual strategy", "several enabled strategies are combined (e.g. EWC + replay)")
    g.add_argument(
        "--strategy",
        nargs="+",
        choices=list(STRATEGIES),
        default=None,
        help="continual-learning methods to run together (default: naive fine-tuning)",
    )
    _add_replay_args(parser.add_argument_group("Replay", "experience replay from a buffer of past tasks' samples"))
    _add_ewc_args(parser.add_argument_group("EWC", "elastic weight consolidation (per-sample diagonal Fisher)"))
    _add_generative_replay_args(
        parser.add_argument_group(
            "Generative replay", "replay sampled from a frozen copy of the model (distillation: --distillation_weight)"
        )
    )
    g = parser.add_argument_group("SI", "synaptic intelligence")
    g.add_argument(
        "--si_lambda", type=b.NON_NEGATIVE, default=_DEFAULTS["si_lambda"], help="SI strength c in c·Σ Ω (θ − θ*)²"
    )
    g.add_argument("--si_epsilon", type=b.POSITIVE, default=_DEFAULTS["si_epsilon"], help="SI damping ξ > 0")


def _add_replay_args(g) -> None:
    policies = "; ".join(f"{k}: {v}" for k, v in BUFFER_POLICIES.items())
    g.add_argument(
        "--buffer_type", "--buffer_policy", dest="buffer_type", choices=list(BUFFER_POLICIES), default=None,
        help=f"enables replay; {policies}",
    )  # fmt: skip
    g.add_argument(
        "--buffer_size", type=b.BUFFER_SIZE, default=_DEFAULTS["buffer_size"],
        help="total replay slots over all past tasks (task_balanced / reservoir / stream_reservoir)",
    )  # fmt: skip
    g.add_argument(
        "--retain_label_uniform_sampling", type=_bool, nargs="?", const=True,
        default=_DEFAULTS["retain_label_uniform_sampling"],
        help="balance class labels within each task's share (task_balanced / reservoir)",
    )  # fmt: skip
    g.add_argument(
        "--replay_ratio", type=b.PROBABILITY, default=_DEFAULTS["replay_ratio"],
        help="fixed replay fraction of every batch in [0, 1); unset: in proportion to the buffer size",
    )  # fmt: skip
    g.add_argument(
        "--replay_loss_weight", type=b.NON_NEGATIVE, default=_DEFAULTS["replay_loss_weight"], help="replayed loss × w"
    )


def _add_generative_replay_args(g) -> None:
    d = OWNED_DEFAULTS["generative_replay"]
    g.add_argument(
        "--gr_num_inference_steps",
        type=b.TIMESTEPS,
        default=d["gr_num_inference_steps"],
        help="teacher sampling steps per replayed image (Masip et al.: 2)",
    )
    g.add_argument("--gr_scheduler", choices=sorted(SCHEDULERS), default=d["gr_scheduler"], help="teacher sampler")
    g.add_argument(
        "--gr_pool_size",
        type=b.POOL_SIZE,
        default=d["gr_pool_size"],
        help="0: sample replays on the fly every step; N: sample N per task once and draw from them",
    )
    g.add_argument(
        "--gr_replay_ratio",
        type=b.OPEN_UNIT,
        default=d["gr_replay_ratio"],
        help="replay fraction of every batch, in (0, 1)",
    )
    g.add_argument(
        "--gr_loss_weight",
        type=b.NON_NEGATIVE,
        default=d["gr_loss_weight"],
        help="weight of the replays' denoising loss (plain generative replay)",
    )
    g.add_argument(
        "--distillation_weight",
        type=b.NON_NEGATIVE,
        default=d["distillation_weight"],
        help="λ > 0: generative distillation, the student regresses the teacher's ε on replays "
        "(Masip et al. 2023 use 3.0)",
    )
    g.add_argument(
        "--distillation_inputs",
        choices=list(DISTILLATION_INPUTS),
        default=d["distillation_inputs"],
        help="what the teacher is distilled on: generated (its samples), noise (x ~ N(0, I), no sampling: "
        "cheapest) or buffer (the images buffer replay adds; needs --buffer_type)",
    )
    g.add_argument(
        "--gr_teacher",
        choices=list(TEACHERS),
        default=d["gr_teacher"],
        help="the teacher's weights: the model's at the start of the task, or its EMA (needs --use_ema)",
    )


def _add_ewc_args(g) -> None:
    g.add_argument("--ewc_loss", action="store_true", help="enables EWC")
    g.add_argument(
        "--lambda_ewc", "--ewc_lambda", dest="lambda_ewc", type=b.NON_NEGATIVE, default=_DEFAULTS["lambda_ewc"],
        help="EWC strength λ in (λ/2)·Σ F (θ − θ*)²",
    )  # fmt: skip
    g.add_argument(
        "--ewc_mode", choices=["separate", "online"], default=_DEFAULTS["ewc_mode"],
        help="one penalty per past task, or one running Fisher decayed by --ewc_gamma",
    )  # fmt: skip
    g.add_argument("--ewc_gamma", type=b.DECAY, default=_DEFAULTS["ewc_gamma"], help="online EWC decay γ in (0, 1]")
    g.add_argument(
        "--num_samples_ewc", "--ewc_num_samples", dest="num_samples_ewc", type=b.EWC_SAMPLES,
        default=_DEFAULTS["num_samples_ewc"], help="samples per Fisher estimate",
    )  # fmt: skip
    g.add_argument(
        "--ewc_fisher_timesteps", type=b.INNER_STEPS, default=_DEFAULTS["ewc_fisher_timesteps"],
        help="(timestep, noise) draws per Fisher sample",
    )  # fmt: skip
    g.add_argument(
        "--ewc_fisher_batch_size", type=b.BATCH_SIZE, default=_DEFAULTS["ewc_fisher_batch_size"],
        help="samples per vectorised per-sample-gradient call (memory ∝ this × parameters)",
    )  # fmt: skip


def enabled_strategies(args: argparse.Namespace) -> list[str]:
    """Names of the strategies the flags enable, in registry order; ["naive"] when none is."""
    names = set(args.strategy or [])
    if args.buffer_type is not None:
        names.add("replay")
    if args.ewc_loss:
        names.add("ewc")
    if "naive" in names and len(names) > 1:
        raise UserInputError(f"--strategy naive cannot be combined with {sorted(names - {'naive'})}")
    return [n for n in STRATEGIES if n in names] or ["naive"]


def check_strategy_ranges(args: argparse.Namespace, names: list[str], tasks) -> None:
    """One clear message per inapplicable strategy flag (each flag's own bounds are checked when it is parsed:
    utils/bounds.py)."""
    for owner, defaults in OWNED_DEFAULTS.items():
        for flag, default in defaults.items():
            if owner not in names and getattr(args, flag) != default:
                raise UserInputError(
                    f"--{flag} is set but {owner} is off (enable it with --strategy {owner}"
                    + (" or --buffer_type" if owner == "replay" else "")
                    + ")"
                )
    if args.retain_label_uniform_sampling and (args.buffer_type or "task_balanced") not in (
        "reservoir",
        "task_balanced",
    ):
        raise UserInputError("--retain_label_uniform_sampling applies to --buffer_type reservoir / task_balanced")
    if args.retain_label_uniform_sampling and tasks.label_kind != "class":
        raise UserInputError(
            f"--retain_label_uniform_sampling needs class labels, the task file has {tasks.label_kind}"
        )
    if "generative_replay" in names:
        _check_generative_replay(args, names)
    if "si" in names and getattr(args, "mixed_precision", "no") == "fp16":
        raise UserInputError("SI reads gradients, which fp16 gradient scaling distorts: use --mixed_precision bf16")


def _check_generative_replay(args: argparse.Namespace, names: list[str]) -> None:
    inputs = args.distillation_inputs
    if inputs != "generated" and args.distillation_weight == 0:
        raise UserInputError(f"--distillation_inputs {inputs} needs --distillation_weight > 0")
    if inputs != "generated" and args.gr_pool_size:
        raise UserInputError(f"--gr_pool_size has no effect with --distillation_inputs {inputs} (nothing is sampled)")
    if inputs == "buffer" and ("replay" not in names or args.buffer_type in ("no_data", None)):
        raise UserInputError("--distillation_inputs buffer distils on buffer replays: add --buffer_type (not no_data)")
    if args.gr_teacher == "ema" and not getattr(args, "use_ema", False):
        raise UserInputError("--gr_teacher ema needs --use_ema (there are no EMA weights otherwise)")


def _build_replay(args: argparse.Namespace, tasks) -> Replay:
    policy_name = args.buffer_type or "task_balanced"
    policy = {
        "no_data": NoData,
        "all_data": AllData,
        "stream_reservoir": lambda: Reservoir(args.buffer_size),
        "reservoir": lambda: TaskBalanced(args.buffer_size, args.retain_label_uniform_sampling),
        "task_balanced": lambda: TaskBalanced(args.buffer_size, args.retain_label_uniform_sampling),
    }[policy_name]()
    transform = ImageTransform(
        args.resolution or min(tasks.image_size), center_crop=args.center_crop, random_flip=args.random_flip
    )
    mixing = "concat" if args.replay_ratio is None else "ratio"
    return Replay(
        ReplayBuffer(policy),
        transform,
        {t.task_id: len(t) for t in tasks},
        mixing=mixing,
        replay_ratio=args.replay_ratio or 0.0,
        loss_weight=args.replay_loss_weight,
    )


def _build_ewc(args: argparse.Namespace, tasks) -> EWC:
    return EWC(
        args.lambda_ewc,
        args.ewc_mode,
        args.ewc_gamma,
        num_samples=args.num_samples_ewc,
        num_timesteps=args.ewc_fisher_timesteps,
        batch_size=args.ewc_fisher_batch_size,
    )


def _build_generative_replay(args, tasks, conditioning, train_scheduler, latent: bool = False) -> GenerativeReplay:
    if conditioning is None or train_scheduler is None:
        raise UserInputError("generative replay is not available from this entry point")
    num_train_timesteps = train_scheduler.config.num_train_timesteps
    if args.gr_num_inference_steps > num_train_timesteps:
        raise UserInputError(
            f"--gr_num_inference_steps {args.gr_num_inference_steps} exceeds the schedule's {num_train_timesteps} "
            "training timesteps"
        )
    guidance = args.guidance_scale if getattr(args, "classifier_free_guidance", False) else 1.0
    return GenerativeReplay(
        conditioning, train_scheduler, seed=args.seed, replay_ratio=args.gr_replay_ratio,
        loss_weight=args.gr_loss_weight, distillation_weight=args.distillation_weight,
        num_inference_steps=args.gr_num_inference_steps, scheduler=args.gr_scheduler, guidance_scale=guidance,
        pool_size=args.gr_pool_size, latent=latent, teacher=args.gr_teacher,
        distillation_inputs=args.distillation_inputs,
    )  # fmt: skip


BUILDERS = {
    "naive": lambda args, tasks, *_: Naive(),
    "replay": lambda args, tasks, *_: _build_replay(args, tasks),
    "generative_replay": _build_generative_replay,
    "ewc": lambda args, tasks, *_: _build_ewc(args, tasks),
    "si": lambda args, tasks, *_: SynapticIntelligence(args.si_lambda, args.si_epsilon),
}


def build_strategy(
    args: argparse.Namespace, tasks, conditioning=None, train_scheduler=None, latent: bool = False
) -> ContinualStrategy:
    """The strategy (or `CombinedStrategy`) the flags enable, validated and configured from its flags.

    `conditioning` and `train_scheduler` are needed by generative replay (it samples from the model); `latent`
    says the model works on VAE latents."""
    names = enabled_strategies(args)
    check_strategy_ranges(args, names, tasks)
    builders = {**BUILDERS, "generative_replay": partial(_build_generative_replay, latent=latent)}
    strategies = [builders[name](args, tasks, conditioning, train_scheduler) for name in names]
    return strategies[0] if len(strategies) == 1 else CombinedStrategy(strategies)
