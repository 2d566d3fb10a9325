"""Sampling as typed configs: the sampler (shared by end-of-task validation, evaluate.py and the evaluation
report), and evaluate.py's labels, annealed MCMC, composition and slot modes. The library's own option objects
(`SamplerOptions`, `MCMCOptions`, `CompositionOptions`) are made from them where the exported model is known
(cli/sampling.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ..sampling.ancestral import DEFAULT_NUM_INFERENCE_STEPS, DEFAULT_SCHEDULER, SCHEDULERS, check_eta
from ..sampling.mcmc import KERNELS
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.options import Checked, option, options_group


@options_group("Sampling", "ancestral sampling over a diffusers scheduler")
@dataclass
class SamplingConfig(Checked):
    scheduler: str = option(
        DEFAULT_SCHEDULER, choices=sorted(SCHEDULERS),
        help="sampling scheduler (ddpm with few steps is strided ancestral sampling, ddpm_large the same with "
        "σ_t² = β_t; _logsnr: steps uniform in log-SNR; the others are ODE solvers except euler_a and the _sde ones)",
    )  # fmt: skip
    num_inference_steps: int = option(
        DEFAULT_NUM_INFERENCE_STEPS, bounds=b.TIMESTEPS, aliases=("--ddpm_num_inference_steps",), help="sampling steps"
    )
    ddim_eta: float = option(
        0.0, bounds=b.UNIT,
        help="DDIM's η in [0, 1] (--scheduler ddim only): 0 deterministic, 1 the ancestral DDPM variance",
    )  # fmt: skip
    guidance_scale: float | None = option(
        None, bounds=b.NON_NEGATIVE,
        help="CFG scale w ≥ 0 (1: no guidance); default: 2 for models trained with CFG, 1 otherwise (any other "
        "value on a model trained without CFG is refused)",
    )  # fmt: skip
    num_samples: int = option(
        8,
        bounds=b.IMAGES_PER_ROW,
        aliases=("--eval_batch_size",),
        help="images per class / prompt (one grid row each)",
    )
    validation_prompts: list[str] | None = option(None, nargs="+", help="prompts for text models")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_eta(self.ddim_eta, self.scheduler, "--ddim_eta")

    def check_steps(self, num_train_timesteps: int, source: str) -> None:
        """--num_inference_steps cannot exceed the training schedule's T (`source` says where T comes from)."""
        if self.num_inference_steps > num_train_timesteps:
            raise UserInputError(
                f"--num_inference_steps {self.num_inference_steps} exceeds the {num_train_timesteps} training "
                f"timesteps of {source}"
            )

    def check_schedule(self, schedule_config, source: str) -> None:
        """`check_steps` against a training schedule read from a file (`source`), and the sampler's timesteps at
        --num_inference_steps inside it (its `steps_offset` can push them past T)."""
        from ..sampling.schedule_check import check_sampling_timesteps

        self.check_steps(schedule_config["num_train_timesteps"], source)
        check_sampling_timesteps(self.scheduler, schedule_config, self.num_inference_steps, source)


@options_group("Labels")
@dataclass
class LabelsConfig(Checked):
    class_labels: list[int] | None = option(
        None, bounds=b.CLASS_ID, nargs="+",
        help="classes to sample (class models); default: every class the model has seen",
    )  # fmt: skip
    sampling_batch_size: int = option(64, bounds=b.BATCH_SIZE, help="images per sampling chunk")


@options_group(
    "Annealed MCMC",
    "K kernel steps at the sample's own noise level t, inside the ancestral loop; step η_t = multiplier·β_t, "
    "mass m_t = β_t",
)
@dataclass
class AnnealedMCMCConfig(Checked):
    mcmc_sampler: str | None = option(
        None, choices=sorted(KERNELS),
        help="ULA/UHA: any model; MALA/CHA (Metropolis-corrected, CHA = HMC): energy models only; with a one-step "
        "--scheduler (ddpm, ddpm_large, ddim, euler, euler_a)",
    )  # fmt: skip
    mcmc_sampler_start_timestep: float = option(
        50, bounds=b.NON_NEGATIVE,
        help="MCMC runs at the timesteps t ≥ this value (training units 0…T−1, as upstream: the noisy "
        "part, from T−1 down to this value)",
    )  # fmt: skip
    mcmc_sampler_max_timestep: float | None = option(
        None, bounds=b.NON_NEGATIVE, help="… and t ≤ this value (default: no upper bound)"
    )
    num_samples_per_step: int = option(1, bounds=b.INNER_STEPS, help="K kernel steps per noise level")
    step_sizes_multiplier: float = option(0.1, bounds=b.POSITIVE, help="η_t (or leapfrog ε_t) = value · β_t")
    damping_coeff: float = option(0.9, bounds=b.UNIT, help="UHA/CHA momentum damping γ ∈ [0, 1]")
    num_leapfrog_steps: int = option(3, bounds=b.INNER_STEPS, help="UHA/CHA leapfrog steps L")

    def __post_init__(self) -> None:
        super().__post_init__()
        start, stop = self.mcmc_sampler_start_timestep, self.mcmc_sampler_max_timestep
        if stop is not None and stop < start:
            raise UserInputError(
                f"--mcmc_sampler_max_timestep {stop:g} is below --mcmc_sampler_start_timestep {start:g}: "
                "MCMC would never run"
            )


@options_group("Composition", "ε = ε_∅ + Σ_k w_k(ε_k − ε_∅) (energies alike); w_k < 0 negates")
@dataclass
class CompositionConfig(Checked):
    composition_pipeline: bool = option(False, help="sample the composition of --composition_labels")
    composition_labels: str | None = option(
        None, help='class models: comma-separated ids, e.g. "2,3"; text models: prompts separated by "|"'
    )
    composition_weights: str | None = option(
        None,
        help='comma-separated w_k; write "--composition_weights=3,-1" when one is negative '
        "(default: --guidance_scale each; 1 each without CFG)",
    )
    composition_mode: str = option(
        "product", choices=("product", "mixture"),
        help="mixture: Σ_k w_k p̃_k (energy models only; weights must be > 0)",
    )  # fmt: skip
    mixture_temperature: float = option(1.0, bounds=b.POSITIVE, help="mixture temperature τ (1: exact)")


DEFAULT_SLOT_IMAGES = 8


@options_group("Slots", "slot-conditioned models (--conditioning slots)")
@dataclass
class SlotModeConfig(Checked):
    slot_mode: str | None = option(
        None, choices=("reconstruct", "masks", "compose"),
        help="reconstruct images from their slots, draw the slot attention masks, or compose slots of several images",
    )  # fmt: skip
    slot_data: str | None = option(None, help="task file of source images (default: the model's training data)")
    slot_task: int | None = option(
        None, bounds=b.TASK_ID, help="task id of the source images (default: the last seen)"
    )
    slot_images: list[int] | None = option(
        None, bounds=b.INDEX, nargs="+", help=f"image indices (default: the first {DEFAULT_SLOT_IMAGES})"
    )
    compose_slots: list[str] | None = option(
        None, nargs="+",
        help='compose mode: "i" (image i\'s objects; the first also gives the background) or "i:k1,k2" (those slots)',
    )  # fmt: skip
    slot_composition: str = option("concat", choices=("concat", "product"), help="see the module docs")


@options_group("Model")
@dataclass
class ExportConfig(Checked):
    """evaluate.py: which exported model, with which weights."""

    model_path: str = option(
        flags=("--model_path", "--model_config_name_or_path"), help="an exported task folder, e.g. outputs/demo/task_3"
    )
    ema: str = option(
        "auto", choices=("auto", "yes", "no"),
        help="the EMA weights (unet/ of an EMA run; unet_ema/ of older exports) or the training weights "
        "(unet_training/); auto: EMA if the model was trained with it",
    )  # fmt: skip


@options_group("Prompts", "text models (pixel or latent)")
@dataclass
class PromptsConfig(Checked):
    negative_prompt: list[str] | None = option(
        None, nargs="+",
        help="replaces the empty prompt in guidance: one for all prompts, or one per --validation_prompts",
    )  # fmt: skip
    weights_prompt: str | None = option(
        None,
        help='composition weights "w1 | w2" for a prompt "p1 | p2" (negative weights negate; '
        "default: --guidance_scale each)",
    )


@options_group("Output")
@dataclass
class OutputConfig(Checked):
    output_dir: str | None = option(
        None, help="default: eval/<task folder> next to the model (outputs/run/task_3 → outputs/run/eval/task_3)"
    )
    seed: int = option(0, bounds=b.SEED, help="seeds the sampling noise (the same seed gives the same images)")
    progress: bool = option(True, flags=("--no_progress",), help="hide the progress bar")
