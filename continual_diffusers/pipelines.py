"""`ContinualDiffusionPipeline`: a diffusers `DiffusionPipeline` over an exported task model (output_dir/task_<k>/).

    pipe = ContinualDiffusionPipeline.from_pretrained("outputs/run/task_2")      # or a Hub repo id
    images = pipe(class_labels=[0, 3], num_images_per_prompt=4, guidance_scale=3, generator=0).images
    images = pipe(mcmc="MALA", composition={2: 3.0, 3: -1.0}).images          # energy model: "2 and not 3"

Components: `unet` (+ `slot_encoder` of slot models, `text_encoder`/`tokenizer` of text models, `vae` of latent
models) and `scheduler`, the training noise schedule (`scheduler=` of the call picks the sampler). What the UNet's
output means comes from the export's `continual_diffusers.json` (`metadata`): ε (or x₀ / v) for score models, the
energy E of `EnergyModel` with ε̂ = ∇ₓE for energy models. Sampling is `sampling.generate.generate`, the code behind
evaluate.py and the end-of-task samples, so the same seed gives the same images as `evaluate.py --seed`.
`from_pretrained` loads through `models.loading.load_task_model`, with all its checks of the folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from .models.conditioning import ClassConditioning, SlotConditioning, TextConditioning, Unconditional
from .models.denoiser import make_denoiser
from .sampling.ancestral import DEFAULT_NUM_INFERENCE_STEPS, DEFAULT_SCHEDULER
from .sampling.annealed import MCMCConfig
from .sampling.generate import CompositionOptions, Generated, SamplerOptions, generate
from .utils import bounds as b
from .utils.errors import UserInputError

__all__ = ["ContinualDiffusionPipeline", "ContinualPipelineOutput"]
DEFAULT_GUIDANCE_SCALE = 2.0  # evaluate.py's --guidance_scale default; used only by models trained with CFG


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
    or a latent one (`vae`). `metadata`: the export's continual_diffusers.json; without it the condition is read
    off the components (class ids from a UNet with class embeddings, no CFG; a score model)."""

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
        self.metadata = dict(metadata) if metadata else _metadata_from(unet, slot_encoder, text_encoder)
        # E or ε̂ by the saved energy_type; it shares unet / slot_encoder, so pipe.to(...) moves it. No .eval() here:
        # the modules may be a live training model's (exports build a pipeline to save it); sampling switches modes.
        self.denoiser = make_denoiser(unet, self.metadata.get("energy_type"), slot_encoder)
        self.conditioning = _conditioning(self.metadata, slot_encoder, text_encoder, tokenizer)
        self._decode = None
        if vae is not None:
            from .models.latent import LatentCodec

            self._decode = LatentCodec(vae).decode

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
        from .models.loading import load_task_model, load_vae

        path = _local_path(str(pretrained_model_name_or_path), subfolder, hub_kwargs)
        device = device or "cpu"
        denoiser, conditioning, scheduler, meta = load_task_model(path, use_ema, device)
        text = (conditioning.text_encoder, conditioning.tokenizer) if meta["conditioning"] == "text" else (None, None)
        pipe = cls(denoiser.unet, scheduler, denoiser.slot_encoder, *text, load_vae(path, meta, device), meta)
        if torch_dtype is not None:
            pipe.to(dtype=torch_dtype)
        return pipe

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """diffusers' layout (model_index.json, one folder per component) plus continual_diffusers.json, so
        `from_pretrained` of the copy loads the same model."""
        from .models.loading import METADATA_FILE

        super().save_pretrained(save_directory, **kwargs)
        index = os.path.join(save_directory, "model_index.json")  # absent components: stock pipelines would warn
        with open(index) as fh:
            config = json.load(fh)
        with open(index, "w") as fh:
            json.dump({k: v for k, v in config.items() if v != [None, None]}, fh, indent=2, sort_keys=True)
        with open(os.path.join(save_directory, METADATA_FILE), "w") as fh:
            json.dump(self.metadata, fh, indent=2, sort_keys=True)

    # ----------------------------------------------------------------------------------------------- sampling
    def generate(
        self, labels: list, options: SamplerOptions, chunk_ids: list[int] | None = None, null_labels=None
    ) -> Generated:
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
        mcmc: MCMCConfig | str | None = None,
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
            guidance_scale: classifier-free guidance w (models trained with CFG only; default 2).
            generator: an int seed, or a `torch.Generator` whose `initial_seed()` is taken: chunk c is drawn from
                its own generator seeded by (seed, c), so the images equal `evaluate.py --seed` and do not depend
                on `sampling_batch_size` across processes. None draws a seed from torch's global RNG.
            output_type: "pil", "np" ((N, H, W, C) in [0, 1]) or "pt" ((N, C, H, W) in [0, 1]).
            negative_prompt: text models: replaces the empty prompt of guidance (one, or one per prompt).
            mcmc: annealed MCMC inside the sampling loop: an `MCMCConfig` or a kernel name ("ULA", "UHA"; "MALA" and
                "CHA" need an energy model).
            composition: `CompositionOptions`, or {concept: weight} (product of experts; negative weights negate).
            scheduler: the sampler (`sampling.ancestral.SCHEDULERS`); eta: DDIM's η.
            sampling_batch_size: images per chunk; max_forward_batch: rows per UNet call.

        Raises:
            UserInputError: labels, options or a combination the model cannot run (e.g. MALA on a score model).
        """
        meta = self.metadata
        if batch_size is not None and num_images_per_prompt is not None:
            raise UserInputError("give num_images_per_prompt or batch_size (its DDPMPipeline name), not both")
        per_label = b.IMAGES_PER_ROW.check("num_images_per_prompt", num_images_per_prompt or batch_size or 1)
        if isinstance(mcmc, str):
            mcmc = MCMCConfig(mcmc)
        if isinstance(composition, dict):
            composition = CompositionOptions(tuple(composition), tuple(float(w) for w in composition.values()))
        guidance = DEFAULT_GUIDANCE_SCALE if guidance_scale is None else guidance_scale
        options = SamplerOptions(
            scheduler,
            num_inference_steps,
            guidance if meta.get("classifier_free_guidance") else 1.0,
            sampling_batch_size,
            _seed(generator),
            mcmc,
            composition,
            max_forward_batch,
            progress=False if getattr(self, "_progress_bar_config", {}).get("disable", False) else None,  # None: auto
            eta=eta,
        )
        rows = self._rows(class_labels, prompt, slots, composition)
        labels = [row for row in rows for _ in range(per_label)]
        nulls = negative_prompts(negative_prompt, rows, per_label, meta, options)
        out = self.generate(labels, options, null_labels=nulls)
        images = _convert((out.images().float().cpu() / 2 + 0.5).clamp(0, 1), output_type, self.numpy_to_pil)
        if not return_dict:
            return (images,)
        return ContinualPipelineOutput(images, labels, out.acceptance_rates(), out.num_grad_evals)

    def _rows(self, class_labels, prompt, slots, composition) -> list:
        """One label per output row: the classes, prompts or slot sets asked for (or their defaults)."""
        meta, kind = self.metadata, self.metadata["conditioning"]
        given = {"class_labels": class_labels, "prompt": prompt, "slots": slots}
        wrong = [name for name, value in given.items() if value is not None and name != _ARG_OF[kind]]
        if wrong:
            raise UserInputError(f"{wrong[0]} does not fit this {_DESCRIBE[kind]} model")
        if composition is not None:
            if any(v is not None for v in given.values()):
                raise UserInputError("composition replaces class_labels / prompt / slots: give the concepts there")
            return [" ".join(f"{w:+g}*{c}" for c, w in zip(composition.labels, composition.weights))]
        if kind == "class":
            classes = _as_list(class_labels) if class_labels is not None else _seen_classes(meta)
            bad = [
                c for c in classes if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < meta["num_classes"]
            ]
            if bad or not classes:
                raise UserInputError(f"class_labels {bad} out of range: the model has {meta['num_classes']} classes")
            return classes
        if kind == "text":
            prompts = _as_list(prompt) if prompt is not None else list(meta.get("validation_prompts") or [])
            if not prompts or not all(isinstance(p, str) for p in prompts):
                raise UserInputError("a text model needs prompt= (a string or a list of strings)")
            return prompts
        if kind == "slots":
            if slots is None:
                raise UserInputError("a slot model needs slots= (images (N, C, H, W) or slot sets (N, K', D))")
            if isinstance(slots, torch.Tensor) and slots.dim() == 4:
                slots = self.conditioning.slots(slots).slots.cpu()
            return list(slots)
        return [None]


_ARG_OF = {"none": None, "class": "class_labels", "text": "prompt", "slots": "slots"}
_DESCRIBE = {"none": "unconditional", "class": "class-conditional", "text": "text-conditional", "slots": "slot"}


def _metadata_from(unet, slot_encoder, text_encoder) -> dict:
    """The condition of a pipeline built from components alone."""
    size, channels = unet.config.sample_size, unet.config.in_channels
    base = {"resolution": size, "in_channels": channels, "energy_type": None, "seen_tasks": [], "classes_per_task": {}}
    if slot_encoder is not None:
        return dict(base, conditioning="slots", classifier_free_guidance=slot_encoder.null is not None)
    if text_encoder is not None:
        return dict(base, conditioning="text", classifier_free_guidance=True)
    classes = getattr(unet.config, "num_class_embeds", None)
    if classes:
        return dict(base, conditioning="class", num_classes=classes, null_class_index=None)
    return dict(base, conditioning="none")


def _conditioning(meta: dict, slot_encoder, text_encoder, tokenizer):
    kind = meta["conditioning"]
    if kind == "slots":
        return SlotConditioning(slot_encoder)
    if kind == "class":
        return ClassConditioning(meta["num_classes"], null_class=meta.get("null_class_index") is not None)
    if kind == "text":
        return TextConditioning(tokenizer, text_encoder)
    return Unconditional()


def _local_path(name: str, subfolder: str | None, hub_kwargs: dict) -> str:
    """A local folder as is; a Hub repo id downloaded (only `subfolder` of it when given)."""
    if os.path.isdir(name) or not _is_repo_id(name):
        return os.path.join(name, subfolder) if subfolder else name
    from huggingface_hub import snapshot_download

    try:
        root = snapshot_download(name, allow_patterns=[f"{subfolder}/*"] if subfolder else None, **hub_kwargs)
    except Exception as err:  # offline, unknown repo, no access: one line instead of a traceback
        message = f"{name}: not a local folder, and not downloadable from the Hub ({err})"
        raise UserInputError(message.splitlines()[0]) from err
    return os.path.join(root, subfolder) if subfolder else root


def _is_repo_id(name: str) -> bool:
    """`user/name` by huggingface_hub's own rules (anything else is a local path)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return "/" in name


def _seed(generator) -> int:
    if isinstance(generator, list):
        raise UserInputError("pass one generator (or an int seed): every chunk of images has its own seeded noise")
    if generator is None:
        return int(torch.randint(0, 2**31, ()))
    seed = generator.initial_seed() if isinstance(generator, torch.Generator) else generator
    return b.SEED.check("generator seed", seed)


def _as_list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _seen_classes(meta: dict) -> list[int]:
    seen = sorted({c for t in meta.get("seen_tasks", []) for c in meta["classes_per_task"][str(t)]})
    return seen or list(range(meta["num_classes"]))


def negative_prompts(negatives, rows: list, per_row: int, meta: dict, options: SamplerOptions, flag: str = ""):
    """One negative prompt per image (the null condition of guidance / composition) for `rows` of `per_row` images
    each, or None: one negative for all, or one per row. `flag` ("--" for evaluate.py) prefixes the names in
    messages, so the CLI and the pipeline say the same thing in their own words."""
    if not negatives:
        return None
    if meta["conditioning"] != "text":
        raise UserInputError(f"{flag}negative_prompt needs a text-conditioned model")
    if options.composition is None and options.guidance_scale == 1.0:
        raise UserInputError(
            f"{flag}negative_prompt acts through guidance: set {flag}guidance_scale != 1 on a model trained with "
            "classifier-free guidance"
        )
    negatives = _as_list(negatives)
    if len(negatives) == 1:
        return negatives * (len(rows) * per_row)
    if options.composition is not None or len(negatives) != len(rows):
        raise UserInputError(
            f"{flag}negative_prompt has {len(negatives)} prompts for {len(rows)} prompt(s): give one, or one each"
        )
    return [n for n in negatives for _ in range(per_row)]


def _convert(images: torch.Tensor, output_type: str, to_pil):
    if output_type == "pt":
        return images
    array = images.permute(0, 2, 3, 1).numpy()
    if output_type == "np":
        return array
    if output_type == "pil":
        return to_pil(array)
    raise UserInputError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
