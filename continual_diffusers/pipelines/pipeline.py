"""`ContinualDiffusionPipeline`: a diffusers `DiffusionPipeline` over an exported task model (output_dir/task_<k>/).

    pipe = ContinualDiffusionPipeline.from_pretrained("outputs/run/task_2")      # or a Hub repo id
    images = pipe(class_labels=[0, 3], num_images_per_prompt=4, guidance_scale=3, generator=0).images
    images = pipe(mcmc="MALA", composition={2: 3.0, 3: -1.0}).images          # energy model: "2 and not 3"

Components: `unet` (+ `slot_encoder` of slot models, `text_encoder`/`tokenizer` of text models, `vae` of latent
models) and `scheduler`, the training noise schedule (`scheduler=` of the call picks the sampler). What the UNet's
output means comes from the export's `ModelSpec` (`spec`, its continual_diffusers.json): ε (or x₀ / v) for score
models, the energy E of `EnergyModel` with ε̂ = ∇ₓE for energy models; which components a kind of conditioning
needs and what it samples is the kind's (`models.conditioning`). Sampling is `sampling.generate.generate`, the code
behind evaluate.py and the end-of-task samples, so the same seed gives the same images as `evaluate.py --seed`.
`from_pretrained` loads through `pipelines.loading.load_task_model`, with all its checks of the folder; the rows a
call asks for are parsed in `pipelines.labels`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from ..models.conditioning import CONDITIONINGS
from ..models.denoiser import make_denoiser
from ..models.spec import METADATA_FILE, ModelSpec
from ..sampling.ancestral import DEFAULT_NUM_INFERENCE_STEPS, DEFAULT_SCHEDULER
from ..sampling.annealed import MCMCOptions
from ..sampling.generate import CompositionOptions, GeneratedChunks, SamplerOptions, generate, resolve_guidance
from ..utils import bounds as b
from ..utils.errors import UserInputError
from .generic_loading import generic_model_index, write_pipeline_module
from .labels import label_rows, negative_prompts

__all__ = ["ContinualDiffusionPipeline", "ContinualPipelineOutput"]


@dataclass
class ContinualPipelineOutput(BaseOutput):
    """images: PIL images, (N, H, W, C) numpy or (N, C, H, W) tensor in [0, 1]; labels: one per image (class id,
    prompt, composition name or None); acceptance_rates: annealed MCMC's acceptance per timestep."""

    images: list | np.ndarray | torch.Tensor
    labels: list
    acceptance_rates: dict[int, float]
    num_mcmc_grad_evals: int


class ContinualDiffusionPipeline(DiffusionPipeline):
    """Sample a continually trained pixel model (score or energy; unconditional, class, text or slot conditioned),
    or a latent one (`vae`). `metadata`: the export's `ModelSpec` (or its continual_diffusers.json object); without
    it the condition is read off the components (class ids from a UNet with class embeddings, no CFG; a score
    model)."""

    model_cpu_offload_seq = "text_encoder->slot_encoder->unet->vae"
    _optional_components = ["slot_encoder", "text_encoder", "tokenizer", "vae"]

    def __init__(self, unet, scheduler, slot_encoder=None, text_encoder=None, tokenizer=None, vae=None, metadata=None):
        super().__init__()
        self.register_modules(
            unet=unet,
            scheduler=scheduler,
            slot_encoder=slot_encoder,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            vae=vae,
        )
        modules = {"slot_encoder": slot_encoder, "text_encoder": text_encoder, "tokenizer": tokenizer}
        modules = {name: module for name, module in modules.items() if module is not None}
        self.spec = ModelSpec.of(metadata) if metadata else _spec_from_components(unet, modules)
        self.conditioning = self.spec.kind.from_spec(self.spec, modules)
        # E or ε̂ by the saved energy_type; it shares unet / slot_encoder, so pipe.to(...) moves it. No .eval() here:
        # the modules may be a live training model's (exports build a pipeline to save it); sampling switches modes.
        self.denoiser = make_denoiser(unet, self.spec.energy_type, self.conditioning.trained_module)
        self._decode = None
        if vae is not None:
            from ..models.latent import LatentCodec

            self._decode = LatentCodec(vae).decode

    @property
    def metadata(self) -> dict:
        """The export's continual_diffusers.json object (`spec.to_json()`, a copy)."""
        return self.spec.to_json()

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        use_ema: bool | None = None,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | None = None,
        subfolder: str | None = None,
        **hub_kwargs,
    ) -> ContinualDiffusionPipeline:
        """A task export (a local folder, or a Hub repo id [+ `subfolder`, e.g. "task_2" of a pushed run]).

        `use_ema`: None takes the inference weights (EMA when trained with EMA), True requires EMA weights, False
        the training weights (`unet_training/`, or `unet/` of older exports next to `unet_ema/`). `hub_kwargs`
        (revision, token, cache_dir, ...) go to `huggingface_hub.snapshot_download`. Raises `UserInputError` for a
        folder that is not a (valid) export."""
        from .loading import load_task_model, load_vae, local_path

        path = local_path(str(pretrained_model_name_or_path), subfolder, hub_kwargs)
        device = device or "cpu"
        denoiser, conditioning, scheduler, spec = load_task_model(path, use_ema, device)
        pipe = cls(denoiser.unet, scheduler, vae=load_vae(path, spec, device), metadata=spec, **conditioning.modules())
        if torch_dtype is not None:
            pipe.to(dtype=torch_dtype)
        return pipe

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """diffusers' layout (model_index.json, one folder per component) plus continual_diffusers.json, so
        `from_pretrained` of the copy loads the same model; model_index.json (+ pipeline.py) also let stock
        `DiffusionPipeline.from_pretrained` load it (`pipelines.generic_loading`)."""
        super().save_pretrained(save_directory, **kwargs)
        index = os.path.join(save_directory, "model_index.json")  # absent components: stock pipelines would warn
        with open(index) as fh:
            config = json.load(fh)
        config = generic_model_index({k: v for k, v in config.items() if v != [None, None]}, self.spec)
        with open(index, "w") as fh:
            json.dump(config, fh, indent=2, sort_keys=True)
        write_pipeline_module(save_directory, self.spec)
        with open(os.path.join(save_directory, METADATA_FILE), "w") as fh:
            json.dump(self.spec.to_json(), fh, indent=2, sort_keys=True)

    # ----------------------------------------------------------------------------------------------- sampling
    def generate(
        self, labels: list, options: SamplerOptions, chunk_ids: list[int] | None = None, null_labels=None
    ) -> GeneratedChunks:
        """The lower-level call behind `__call__` and evaluate.py: one image per entry of `labels` (class id, prompt,
        slot set or None) with `options`; only the chunks `chunk_ids` (default all, see `sampling.generate`)."""
        return generate(
            self.denoiser, self.conditioning, self.scheduler, labels, options, self.device, chunk_ids,
            self._decode, null_labels,
        )  # fmt: skip

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | list[int] | None = None,
        prompt: str | list[str] | None = None,
        slots: torch.Tensor | list[torch.Tensor] | None = None,
        num_images_per_prompt: int | None = None,
        guidance_scale: float | None = None,
        num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS,
        generator: torch.Generator | int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        *,
        negative_prompt: str | list[str] | None = None,
        mcmc: MCMCOptions | str | None = None,
        composition: CompositionOptions | dict | None = None,
        scheduler: str = DEFAULT_SCHEDULER,
        eta: float = 0.0,
        batch_size: int | None = None,
        sampling_batch_size: int = 64,
        max_forward_batch: int | None = None,
    ) -> ContinualPipelineOutput | tuple:
        """Sample `num_images_per_prompt` images (default 1; `batch_size` is DDPMPipeline's name for it) per class,
        prompt or slot set, one after the other.

        Args:
            class_labels: class models; default every class of the tasks seen so far.
            prompt: text models; default the export's validation prompts.
            slots: slot models: images (N, C, H, W) in [-1, 1] (their slots are the condition: reconstruction) or
                slot sets (N, K', D) / a list of (K', D).
            guidance_scale: classifier-free guidance w (default: 2 with CFG, 1 without; ≠ 1 on a model trained
                without CFG is refused, `resolve_guidance`).
            generator: an int seed, or a `torch.Generator` whose `initial_seed()` is taken: chunk c is drawn from
                its own generator seeded by (seed, c), so the images equal `evaluate.py --seed` and do not depend
                on `sampling_batch_size` across processes. None draws a seed from torch's global RNG.
            output_type: "pil", "np" ((N, H, W, C) in [0, 1]) or "pt" ((N, C, H, W) in [0, 1]).
            negative_prompt: text models: replaces the empty prompt of guidance (one, or one per prompt).
            mcmc: annealed MCMC inside the sampling loop: an `MCMCOptions` or a kernel name ("ULA", "UHA"; "MALA" and
                "CHA" need an energy model).
            composition: `CompositionOptions`, or {concept: weight} (product of experts; negative weights negate).
            scheduler: the sampler (`sampling.ancestral.SCHEDULERS`); eta: DDIM's η.
            sampling_batch_size: images per chunk; max_forward_batch: rows per UNet call.

        Raises:
            UserInputError: labels, options or a combination the model cannot run (e.g. MALA on a score model).
        """
        if batch_size is not None and num_images_per_prompt is not None:
            raise UserInputError("give num_images_per_prompt or batch_size (its DDPMPipeline name), not both")
        per_label = b.IMAGES_PER_ROW.check("num_images_per_prompt", num_images_per_prompt or batch_size or 1)
        if isinstance(mcmc, str):
            mcmc = MCMCOptions(mcmc)
        if isinstance(composition, dict):
            composition = CompositionOptions(tuple(composition), tuple(float(w) for w in composition.values()))
        options = SamplerOptions(
            scheduler,
            num_inference_steps,
            resolve_guidance(guidance_scale, self.spec.classifier_free_guidance),
            sampling_batch_size,
            _seed(generator),
            mcmc,
            composition,
            max_forward_batch,
            progress=False if getattr(self, "_progress_bar_config", {}).get("disable", False) else None,  # None: auto
            eta=eta,
        )
        given = {"class_labels": class_labels, "prompt": prompt, "slots": slots}
        rows = label_rows(self.conditioning, self.spec, given, composition=composition)
        labels = [row for row in rows for _ in range(per_label)]
        nulls = negative_prompts(negative_prompt, rows, per_label, self.conditioning, options)
        out = self.generate(labels, options, null_labels=nulls)
        images = _convert((out.images().float().cpu() / 2 + 0.5).clamp(0, 1), output_type, self.numpy_to_pil)
        if not return_dict:
            return (images,)
        return ContinualPipelineOutput(images, labels, out.acceptance_rates(), out.num_grad_evals)


def _spec_from_components(unet, modules: dict) -> ModelSpec:
    """The spec of a pipeline built from components alone: the first kind that recognises them (unconditional
    when none does), a score model."""
    for name, kind in CONDITIONINGS.items():
        found = kind.params_from_components(unet.config, modules)
        if found is not None:
            params, guidance = found
            return ModelSpec(name, unet.config.sample_size, unet.config.in_channels, params, guidance)
    return ModelSpec("none", unet.config.sample_size, unet.config.in_channels)


def _seed(generator) -> int:
    if isinstance(generator, list):
        raise UserInputError("pass one generator (or an int seed): every chunk of images has its own seeded noise")
    if generator is None:
        return int(torch.randint(0, 2**31, ()))
    seed = generator.initial_seed() if isinstance(generator, torch.Generator) else generator
    return b.SEED.check("generator seed", seed)


def _convert(images: torch.Tensor, output_type: str, to_pil):
    if output_type == "pt":
        return images
    array = images.permute(0, 2, 3, 1).numpy()
    if output_type == "np":
        return array
    if output_type == "pil":
        return to_pil(array)
    raise UserInputError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
