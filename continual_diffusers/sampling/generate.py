"""Batched generation for a list of labels (class ids, prompts or None), shared by end-of-task validation and
evaluate.py: builds the guided / composed denoise function per chunk, runs the ancestral loop (optionally with
annealed MCMC) and aggregates MCMC acceptance statistics.

Chunk c (images c·batch_size … ) is always drawn from its own generator seeded by (seed, c), so a sample does not
depend on how the chunks are split across processes.

Progress (`utils.progress.progress_bar`, used by every long loop: sampling, EWC's Fisher, the generative-replay
pool, end-of-task evaluation): a `progress` of True shows the bar, False hides it, and None ("auto", the default)
shows it once the loop has run `PROGRESS_DELAY_S` seconds, so short calls (tests, small sample grids) print nothing
and a long one (a 1000-step sampler, a Fisher estimate on the CPU) shows movement. Bars go to stderr, on the main
process only (each machine's local main process, as the trainer's task bar), and are closed when the loop raises.
`generate` nests a per-timestep bar (leave=False) under its bar over chunks; the per-timestep bar always waits
`PROGRESS_DELAY_S`, so it shows for long samplers only, not as flicker between short chunks.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from ..models.conditioning.base import NOT_COMPOSABLE
from ..models.denoiser import EnergyModel
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.progress import PROGRESS_DELAY_S, is_main_process, progress_bar
from ..utils.seed import make_generator
from .ancestral import (
    DEFAULT_NUM_INFERENCE_STEPS,
    DEFAULT_SCHEDULER,
    MULTISTEP,
    SCHEDULERS,
    SchedulerName,
    check_eta,
    make_sampling_scheduler,
    sample_ancestral,
)
from .annealed import AnnealedMCMC, MCMCOptions
from .composition import CompositionMode, check_composition, compose
from .schedule_check import check_sampling_timesteps


@dataclass(frozen=True)
class CompositionOptions:
    """K concepts (class ids or prompts) composed for every image; see `composition.compose`."""

    labels: tuple
    weights: tuple[float, ...]
    mode: CompositionMode = "product"
    temperature: float = 1.0  # mixture only


DEFAULT_GUIDANCE_SCALE = 2.0  # the guidance a model trained with CFG gets when none is given


def resolve_guidance(guidance_scale: float | None, trained_with_cfg: bool, flag: str = "guidance_scale") -> float:
    """The CFG scale to sample with: None (not given) is the model's own, `DEFAULT_GUIDANCE_SCALE` with classifier-
    free guidance and 1 (no guidance) without; a given scale ≠ 1 on a model trained without CFG is refused (it
    would give exactly the images of 1: there is no null condition to guide away from). The one statement of this
    rule, for the pipeline, evaluate.py, the evaluation report and the training scripts' end-of-task samples."""
    if guidance_scale is None:
        return DEFAULT_GUIDANCE_SCALE if trained_with_cfg else 1.0
    b.NON_NEGATIVE.check(flag, guidance_scale)
    if guidance_scale != 1.0 and not trained_with_cfg:
        raise UserInputError(
            f"{flag} {guidance_scale:g} needs a model trained with classifier-free guidance "
            "(--classifier_free_guidance); this one was trained without: leave it out or pass 1"
        )
    return float(guidance_scale)


@dataclass(frozen=True)
class SamplerOptions:
    scheduler: SchedulerName = DEFAULT_SCHEDULER
    num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS
    guidance_scale: float = 1.0  # ≠ 1 only for a model with a null condition (trained with CFG); refused otherwise
    batch_size: int = 64  # images per chunk
    seed: int = 0
    mcmc: MCMCOptions | None = None  # annealed MCMC inside the ancestral loop
    composition: CompositionOptions | None = None  # replaces per-image labels by K composed concepts
    max_forward_batch: int | None = None  # rows per UNet call for the K(+1)-condition batch; None: one call
    progress: bool | None = None  # True: show the bars; False: never; None: once a call runs a few seconds
    eta: float = 0.0  # DDIM's η (scheduler "ddim" only): 0 deterministic, 1 the ancestral DDPM variance


@dataclass
class GeneratedChunks:
    """What `generate` drew: the images by chunk, and the annealed-MCMC acceptance statistics per timestep."""

    chunks: dict[int, torch.Tensor] = field(default_factory=dict)  # chunk index -> (b, C, H, W) in [-1, 1]
    acceptance_sum: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    num_chains: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    num_grad_evals: int = 0

    def images(self) -> torch.Tensor:
        return torch.cat([self.chunks[i] for i in sorted(self.chunks)])

    def add_mcmc(self, hook: AnnealedMCMC) -> None:
        """Add one chunk's MCMC statistics (acceptance per timestep, gradient evaluations)."""
        for t, n in hook.num_chains.items():
            self.acceptance_sum[t] += hook.acceptance_sum[t]
            self.num_chains[t] += n
        self.num_grad_evals += hook.num_grad_evals

    def acceptance_rates(self) -> dict[int, float]:
        return {t: self.acceptance_sum[t] / self.num_chains[t] for t in sorted(self.num_chains, reverse=True)}


def energy_requirement(mcmc: MCMCOptions | None, composition_mode: str | None) -> str | None:
    """What of these sampling options needs an energy model's log p̃ = −E/σ_t, as the refusal a score model gets,
    or None: a Metropolis-corrected kernel (MALA, CHA: `MCMCOptions.needs_energy`) or a mixture composition. The one
    statement of this rule, for `SamplerOptions` and, before a model is loaded, evaluate.py's flags."""
    if mcmc is not None and mcmc.needs_energy:
        return (
            f"--mcmc_sampler {mcmc.sampler} needs an energy model (log p̃ = −E/σ_t); this is a score model: use ULA "
            "or UHA"
        )
    if composition_mode == "mixture":
        return "--composition_mode mixture needs an energy model (log p̃ = −E/σ_t); this is a score model"
    return None


def check_options(model, conditioning, options: SamplerOptions) -> None:
    """Refuse combinations the model cannot run, with one clear message."""
    energy = isinstance(model, EnergyModel)
    b.NON_NEGATIVE.check("guidance_scale", options.guidance_scale)  # NaN guidance would give all-black images
    b.TIMESTEPS.check("num_inference_steps", options.num_inference_steps)
    b.BATCH_SIZE.check("batch_size", options.batch_size)
    b.UNIT.check("eta", options.eta)
    check_eta(options.eta, options.scheduler)
    comp = options.composition
    needs = energy_requirement(options.mcmc, comp.mode if comp is not None else None)
    if needs is not None and not energy:
        raise UserInputError(needs)
    if options.mcmc is not None and issubclass(SCHEDULERS[options.scheduler][0], MULTISTEP):
        raise UserInputError(
            f"--mcmc_sampler {options.mcmc.sampler} moves x between solver steps, and {options.scheduler} is a "
            "multistep solver whose next step extrapolates from the model outputs of points x no longer holds: "
            "use a one-step sampler (--scheduler ddpm, ddpm_large, ddim, euler or euler_a)"
        )
    if comp is not None:
        if not conditioning.conditional:
            raise UserInputError(NOT_COMPOSABLE.format(conditioning.description))
        if len(comp.labels) != len(comp.weights) or not comp.labels:
            raise UserInputError(f"composition: {len(comp.labels)} concepts but {len(comp.weights)} weights")
        for weight in comp.weights:
            b.FINITE.check("composition weight", weight)
        b.POSITIVE.check("composition temperature", comp.temperature)


def check_negation(weights, has_null: bool) -> None:
    """Refuse a negative product weight without a null condition. Negation (Composable Diffusion, Liu et al.
    2022) steers away from concept k relative to the unconditional model, ε_∅ − |w|(ε_k − ε_∅); with no ε_∅ the
    product Σ_k w_k ε_k would silently sample p_k^{−|w|}, an inverse density that negates nothing. Positive weights
    without a null condition are the documented product of experts Π_k p_k^{w_k} and stay allowed."""
    negative = [w for w in weights if w < 0]
    if negative and not has_null:
        raise UserInputError(
            f"composition weight {negative[0]:g}: negation needs the null condition of a model trained with "
            "classifier-free guidance (--classifier_free_guidance); this one has none, so use weights > 0"
        )


def _encode(conditioning, labels: list, device) -> dict:
    if labels[0] is None:
        return {}
    return conditioning.encode(labels, device)


def denoiser_for(
    model,
    conditioning,
    labels: list,
    options: SamplerOptions,
    alphas_cumprod,
    device,
    null_labels: list | None = None,
    prediction_type: str = "epsilon",
):
    """The guided (CFG) or composed denoise function for one chunk of `len(labels)` images. `null_labels` (one per
    image, e.g. negative prompts) replace the null condition of guidance and composition; `prediction_type`: the
    model's (a composition without a null condition is formed in ε, `composition.compose`)."""
    n, comp = len(labels), options.composition
    null = conditioning.null(n, device) if conditioning.supports_null else None
    if null_labels is not None:
        null = _encode(conditioning, null_labels, device)
    if comp is not None:
        conds = [_encode(conditioning, [c] * n, device) for c in comp.labels]
        return compose(
            model, conds, comp.weights, null, comp.mode, alphas_cumprod, comp.temperature, options.max_forward_batch,
            prediction_type,
        )  # fmt: skip
    guided = null is not None and options.guidance_scale != 1.0
    return compose(
        model,
        [_encode(conditioning, labels, device)],
        [options.guidance_scale if guided else 1.0],
        null if guided else None,
        max_batch=options.max_forward_batch,
    )


@torch.no_grad()
def generate(
    model,
    conditioning,
    train_scheduler,
    labels: list,
    options: SamplerOptions,
    device,
    chunk_ids: list[int] | None = None,
    decode_fn=None,
    null_labels: list | None = None,
    desc: str = "batches",
) -> GeneratedChunks:
    """Sample one image per entry of `labels`, in chunks of `options.batch_size`; only the chunks in `chunk_ids`
    (default: all) are drawn, which is how evaluate.py splits the work across processes.

    `decode_fn(latents (b, c, h, w)) -> images (b, 3, H, W) in [-1, 1]`: for latent models; the sample is then not
    clamped (latents are not in [-1, 1]) and each chunk is decoded. `null_labels`: one per entry of `labels`
    (negative prompts), used instead of the null condition. `desc`: the label of the bar over chunks, which
    `options.progress` shows (see the module docstring); a per-timestep bar is nested under it."""
    prediction_type = check_request(model, conditioning, train_scheduler, labels, options, null_labels)
    unet_cfg = model.unet.config
    shape = (unet_cfg.in_channels, unet_cfg.sample_size, unet_cfg.sample_size)
    starts = list(range(0, len(labels), options.batch_size))
    chunk_ids = range(len(starts)) if chunk_ids is None else chunk_ids
    was_training = model.training
    model.eval()
    out = GeneratedChunks()
    # The per-timestep bar: wherever the bar over chunks may show, once one chunk has run PROGRESS_DELAY_S.
    timestep_bar = options.progress is not False and is_main_process()
    try:
        with progress_bar(chunk_ids, desc=desc, progress=options.progress, unit="batch") as chunks:
            for c in chunks:
                rows = slice(starts[c], starts[c] + options.batch_size)
                part = labels[rows]
                nulls = None if null_labels is None else null_labels[rows]
                scheduler = make_sampling_scheduler(options.scheduler, train_scheduler.config)
                generator = make_generator(options.seed, "sampling", c, device=device)
                denoise = denoiser_for(
                    model,
                    conditioning,
                    labels[rows],
                    options,
                    scheduler.alphas_cumprod,
                    device,
                    nulls,
                    prediction_type,
                )
                hook = None if options.mcmc is None else AnnealedMCMC(
                    denoise, options.mcmc, scheduler, generator, prediction_type
                )  # fmt: skip
                x = sample_ancestral(
                    denoise,
                    scheduler,
                    (len(part), *shape),
                    options.num_inference_steps,
                    generator,
                    device,
                    hook,
                    clamp=decode_fn is None,
                    progress=timestep_bar,
                    eta=options.eta,
                    progress_delay=PROGRESS_DELAY_S,
                )
                out.chunks[c] = x if decode_fn is None else decode_fn(x)
                if hook is not None:
                    out.add_mcmc(hook)
    finally:  # a refused or interrupted call leaves the model as it found it
        model.train(was_training)
    return out


def check_request(model, conditioning, train_scheduler, labels: list, options: SamplerOptions, null_labels) -> str:
    """Refuse, before any sampling, what `generate` cannot draw as asked (one clear message); returns the
    schedule's prediction type."""
    if null_labels is not None and len(null_labels) != len(labels):
        raise UserInputError(f"{len(null_labels)} negative prompts for {len(labels)} images")
    check_options(model, conditioning, options)
    if options.guidance_scale != 1.0 and options.composition is None and conditioning.conditional:
        # (an unconditional model has no condition to guide: its samples are the same at any scale)
        resolve_guidance(options.guidance_scale, conditioning.supports_null or null_labels is not None)
    prediction_type = train_scheduler.config.get("prediction_type", "epsilon")
    comp = options.composition
    if comp is not None and comp.mode == "product":
        has_null = conditioning.supports_null or null_labels is not None
        check_negation(comp.weights, has_null)
        check_composition(comp.weights, has_null, prediction_type, train_scheduler.alphas_cumprod)
    if options.num_inference_steps > train_scheduler.config.num_train_timesteps:
        raise UserInputError(
            f"num_inference_steps {options.num_inference_steps} exceeds the schedule's "
            f"{train_scheduler.config.num_train_timesteps} training timesteps"
        )
    check_sampling_timesteps(options.scheduler, train_scheduler.config, options.num_inference_steps, "the schedule")
    return prediction_type


def generate_samples(
    model, conditioning, train_scheduler, labels: list, options: SamplerOptions, device, decode_fn=None, desc="batches"
):
    """One image per entry of `labels` → (len(labels), C, H, W) in [-1, 1], sampled in chunks of batch_size.

    Entries are class ids (class models), prompts (text models) or None (unconditional). `decode_fn`: latent
    models' decoder; `desc`: the progress bar's label (see `generate`)."""
    return generate(
        model, conditioning, train_scheduler, labels, options, device, decode_fn=decode_fn, desc=desc
    ).images()
