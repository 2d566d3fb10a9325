"""Task exports: what a run leaves for users of diffusers after each task (its model card: `model_card.py`; the Hub
upload: `hub.py`).

Layout of output_dir/task_{k}/ (written atomically, `checkpoint.write_atomically`):

    model_index.json          pixel models: `ContinualDiffusionPipeline` in diffusers' custom-pipeline form, next
    [pipeline.py]             to pipeline.py (unconditional score models: stock `DDPMPipeline`), so that
                              `DiffusionPipeline.from_pretrained` loads them (`pipelines/generic_loading.py`);
                              latent score models: `StableDiffusionPipeline`
    unet/                     the inference weights, as diffusers' training examples export them: the EMA average
                              when trained with --use_ema, else the training weights
    unet_training/            --use_ema only: the training (non-EMA) weights (also in the run's checkpoints)
    scheduler/  [slot_encoder/ [slot_encoder_training/]]  [text_encoder/ tokenizer/]  [vae/]  [lora/<adapter>/]
    continual_diffusers.json  the `ModelSpec` ("ema": whether unet/ holds EMA weights)
    README.md                 model card (YAML front matter), samples.png   the end-of-task samples

output_dir/README.md is the run's model card. Exports written before this layout (unet/ = training weights next
to unet_ema/) still load (`pipelines.loading.weight_folders`).
"""

from __future__ import annotations

import copy
import json
import os

import torch

from ..models.lora import has_adapters, merged_copy, save_lora_adapters
from ..models.spec import METADATA_FILE, ModelSpec
from . import checkpoint as ckpt


def export_task(trainer, task) -> torch.nn.Module:
    """Write output_dir/task_<id>/ for the trainer's model after `task` (the end-of-task samples follow, see
    `callbacks.py`); returns the model with the inference weights (EMA when trained with EMA), a copy."""
    task_dir = os.path.join(trainer.cfg.output_dir, f"task_{task.task_id}")
    ema_model = None
    if trainer.ema is not None:
        ema_model = copy.deepcopy(trainer.model)
        trainer.apply_ema(ema_model)
    position = trainer.position
    spec = trainer.spec.at_export(task.task_id, position.seen_tasks, position.global_step)
    write_export(
        task_dir, trainer.model, ema_model, trainer.objective.scheduler, spec, trainer.text_components, trainer.vae
    )
    return ema_model if ema_model is not None else copy.deepcopy(trainer.model)


def write_export(task_dir: str, model, ema_model, noise_scheduler, spec: ModelSpec | dict, text=None, vae=None) -> str:
    """Write `task_dir` (layout in the module docs) for denoiser `model` [and its EMA copy `ema_model`].

    A UNet carrying LoRA adapters is exported with its active adapters merged (a plain UNet), and every adapter of
    the inference UNet is also written to lora/<adapter>/ in diffusers' LoRA format. `text`: (tokenizer,
    text_encoder) of text models; `vae`: latent models (vae/ and, for score models, a StableDiffusionPipeline)."""
    inference = ema_model if ema_model is not None else model
    spec = ModelSpec.of(spec)

    def write(tmp: str) -> None:
        meta = spec.replace(ema=ema_model is not None)
        unet, training = inference.unet, None if ema_model is None else model.unet
        if has_adapters(unet):
            active = list(unet.active_adapters())
            sizes = save_lora_adapters(unet, sorted(unet.peft_config), os.path.join(tmp, "lora"))
            meta = meta.replace(lora=dict(spec.lora or {}, active_adapters=active, adapter_bytes=sizes))
            unet = merged_copy(unet, active)
            training = None if training is None else merged_copy(training, active)
        tokenizer, text_encoder = text if text is not None else (None, None)
        slot_encoder = getattr(inference, "slot_encoder", None)
        if vae is None:
            from ..pipelines import ContinualDiffusionPipeline

            pipe = ContinualDiffusionPipeline(unet, noise_scheduler, slot_encoder, text_encoder, tokenizer, None, meta)
            pipe.save_pretrained(tmp)  # model_index.json, the components, continual_diffusers.json
        else:
            unet.save_pretrained(os.path.join(tmp, "unet"))
            noise_scheduler.save_pretrained(os.path.join(tmp, "scheduler"))
            vae.save_pretrained(os.path.join(tmp, "vae"))
            if text is not None:
                tokenizer.save_pretrained(os.path.join(tmp, "tokenizer"))
                text_encoder.save_pretrained(os.path.join(tmp, "text_encoder"))
            if not meta.energy_type:  # a stock pipeline would read an energy UNet's f as ε: don't offer it
                _write_json(os.path.join(tmp, "model_index.json"), sd_model_index(unet, noise_scheduler, text, vae))
            _write_json(os.path.join(tmp, METADATA_FILE), meta.to_json())
        if training is not None:
            training.save_pretrained(os.path.join(tmp, "unet_training"))
            if slot_encoder is not None:
                model.slot_encoder.save_pretrained(os.path.join(tmp, "slot_encoder_training"))

    return ckpt.write_atomically(task_dir, write)


def sd_model_index(unet, scheduler, text, vae) -> dict:
    """model_index.json of a StableDiffusionPipeline without safety checker / feature extractor."""
    import diffusers

    return {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", type(scheduler).__name__],
        "text_encoder": ["transformers", type(text[1]).__name__],
        "tokenizer": ["transformers", type(text[0]).__name__],
        "unet": ["diffusers", type(unet).__name__],
        "vae": ["diffusers", type(vae).__name__],
    }


def _write_json(path: str, data: dict) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
