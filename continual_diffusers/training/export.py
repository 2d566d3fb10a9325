"""Task exports, model cards and the Hub upload: what a run leaves for users of diffusers.

Layout of output_dir/task_{k}/ (written atomically, `checkpoint.write_atomically`):

    model_index.json          pixel models: `ContinualDiffusionPipeline` (unconditional score models also load
                              with stock `DDPMPipeline`); latent score models: `StableDiffusionPipeline`
    unet/                     the inference weights, as diffusers' training examples export them: the EMA average
                              when trained with --use_ema, else the training weights
    unet_training/            --use_ema only: the training (non-EMA) weights (also in the run's checkpoints)
    scheduler/  [slot_encoder/ [slot_encoder_training/]]  [text_encoder/ tokenizer/]  [vae/]  [lora/<adapter>/]
    continual_diffusers.json  metadata ("ema": whether unet/ holds EMA weights)
    README.md                 model card (YAML front matter), samples.png   the end-of-task samples

output_dir/README.md is the run's model card. Exports written before this layout (unet/ = training weights next
to unet_ema/) still load (`models.loading.weight_folders`).
"""

from __future__ import annotations

import copy
import json
import os

import torch

from ..evaluation.directions import display_name
from ..utils.errors import RunError
from ..utils.logging import get_logger
from . import checkpoint as ckpt

logger = get_logger(__name__)
CARD_FILE = "README.md"
# What a Hub upload of a run leaves out: resumable checkpoints and half-written or half-deleted folders.
HUB_IGNORE = ["checkpoint-*", "checkpoint-*/**", "*.tmp", "*.tmp/**", "*.trash", "*.trash/**"]


# ------------------------------------------------------------------------------------------------------ exports
def export_task(trainer, task) -> torch.nn.Module:
    """Write output_dir/task_<id>/ for the trainer's model after `task` (the end-of-task samples follow, see
    `callbacks.py`); returns the model with the inference weights (EMA when trained with EMA), a copy."""
    task_dir = os.path.join(trainer.cfg.output_dir, f"task_{task.task_id}")
    ema_model = None
    if trainer.ema is not None:
        ema_model = copy.deepcopy(trainer.model)
        trainer.apply_ema(ema_model)
    meta = dict(
        trainer.export_metadata,
        task_id=task.task_id,
        seen_tasks=list(trainer.position.seen_tasks),
        global_step=trainer.position.global_step,
    )
    write_export(
        task_dir, trainer.model, ema_model, trainer.objective.scheduler, meta, trainer.text_components, trainer.vae
    )
    return ema_model if ema_model is not None else copy.deepcopy(trainer.model)


def write_export(task_dir: str, model, ema_model, noise_scheduler, metadata: dict, text=None, vae=None) -> str:
    """Write `task_dir` (layout in the module docs) for denoiser `model` [and its EMA copy `ema_model`].

    A UNet carrying LoRA adapters is exported with its active adapters merged (a plain UNet), and every adapter of
    the inference UNet is also written to lora/<adapter>/ in diffusers' LoRA format. `text`: (tokenizer,
    text_encoder) of text models; `vae`: latent models (vae/ and, for score models, a StableDiffusionPipeline)."""
    from ..strategies.lora import has_adapters, merged_copy, save_lora_adapters

    inference = ema_model if ema_model is not None else model

    def write(tmp: str) -> None:
        meta = dict(metadata, ema=ema_model is not None)
        unet, training = inference.unet, None if ema_model is None else model.unet
        if has_adapters(unet):
            active = list(unet.active_adapters())
            sizes = save_lora_adapters(unet, sorted(unet.peft_config), os.path.join(tmp, "lora"))
            meta["lora"] = dict(metadata.get("lora", {}), active_adapters=active, adapter_bytes=sizes)
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
            if not meta.get("energy_type"):  # a stock pipeline would read an energy UNet's f as ε: don't offer it
                _write_json(os.path.join(tmp, "model_index.json"), sd_model_index(unet, noise_scheduler, text, vae))
            _write_json(os.path.join(tmp, "continual_diffusers.json"), meta)
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


# -------------------------------------------------------------------------------------------------- model cards
def write_model_cards(trainer, task) -> tuple[str, str]:
    """README.md model cards in output_dir/task_<id>/ and output_dir/ (the metrics of the evaluation so far)."""
    cfg = trainer.cfg
    history = trainer.task_eval.report.history if trainer.task_eval is not None else []
    meta = dict(trainer.export_metadata, seen_tasks=list(trainer.position.seen_tasks))
    training = training_summary(cfg.to_dict(), trainer.strategy.name)
    task_dir = os.path.join(cfg.output_dir, f"task_{task.task_id}")
    cards = (
        (os.path.join(task_dir, CARD_FILE), model_card(meta, training, history, task_id=task.task_id)),
        (os.path.join(cfg.output_dir, CARD_FILE), model_card(meta, training, history)),
    )
    for path, text in cards:
        with open(path, "w") as fh:
            fh.write(text)
    return cards[0][0], cards[1][0]


def training_summary(config: dict, strategy: str) -> dict:
    """The training settings worth a reader's time (scalars of `TrainConfig`, without paths), and the strategy."""
    skip = {"output_dir", "validation_prompts"}
    summary = {k: v for k, v in config.items() if k not in skip and (v is None or isinstance(v, int | float | str))}
    return {"strategy": strategy, **summary}


def model_card(meta: dict, training: dict, history: list[dict], task_id: int | None = None) -> str:
    """A Hub model card (YAML front matter + markdown) for one task export (`task_id`) or the whole run."""
    from huggingface_hub import ModelCardData

    seen = list(meta.get("seen_tasks", []))
    per_task = meta.get("classes_per_task", {})
    classes = sorted({c for t in seen for c in per_task.get(str(t), [])})
    kind, energy, latent = meta["conditioning"], meta.get("energy_type"), bool(meta.get("latent"))
    tags = ["continual-diffusers", "continual-learning", "diffusers", f"strategy-{training['strategy']}"]
    tags += [f"energy-{energy}" if energy else "score-based", f"conditioning-{kind}"]
    tags += ["latent-diffusion"] if latent else ["diffusers:ContinualDiffusionPipeline"]
    data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="text-to-image" if kind == "text" else "unconditional-image-generation",
        tags=tags,
        tasks_seen=seen,
        classes_seen=classes,
        classes_per_task={str(t): list(per_task.get(str(t), [])) for t in seen},
        model_config={k: meta.get(k) for k in MODEL_KEYS if meta.get(k) is not None},
        training_config=training,
        continual_metrics=history,
    )
    where = f"task_{task_id}" if task_id is not None else "the run"
    what = f"after task {task_id} of a continual run" if task_id is not None else "one folder per task trained"
    return f"---\n{data.to_yaml()}\n---\n\n" + _card_body(meta, training, history, seen, classes, where, what)


MODEL_KEYS = ("conditioning", "num_classes", "classifier_free_guidance", "energy_type", "prediction_type",
              "resolution", "in_channels", "validation_prompts", "latent")  # fmt: skip


def _card_body(meta, training, history, seen, classes, where, what) -> str:
    kind, energy = meta["conditioning"], meta.get("energy_type")
    model = f"{'energy (' + energy + ')' if energy else 'score'} model, {kind} conditioning"
    path = '"path/to/task_k"' if where == "the run" else '"path/to/this/folder"'
    call = {"class": "class_labels=[0, 1]", "text": 'prompt="..."', "slots": "slots=images"}.get(kind, "")
    lines = [
        f"# Continual diffusion model: {where}",
        "",
        f"A diffusers {model} trained with continual-diffusers ({what}); strategy `{training['strategy']}`.",
        f"Tasks seen: {seen}." + (f" Classes seen: {classes}." if classes else ""),
        "",
        "## Usage",
        "",
        "```python",
        "from continual_diffusers import ContinualDiffusionPipeline",
        "",
        f'pipe = ContinualDiffusionPipeline.from_pretrained({path})  # a Hub repo: add subfolder="task_k" for a run',
        f"images = pipe({call + ', ' if call else ''}num_images_per_prompt=4, generator=0).images",
        "```",
        "",
    ]
    if kind == "none" and not energy and not meta.get("latent"):
        lines += ["It also loads with stock diffusers: `DDPMPipeline.from_pretrained(...)`.", ""]
    lines += [
        "`unet/` holds the inference weights: the EMA average when trained with EMA (then `unet_training/` holds the "
        "training weights), as diffusers' training examples export them.",
        "",
        "## Metrics so far",
        "",
    ]
    lines += _metric_lines(history) or ["No end-of-task evaluation was run (`--eval_every_task`)."]
    return "\n".join(lines) + "\n"


def _metric_lines(history: list[dict]) -> list[str]:
    rows = []
    for entry in history:
        for metric, values in sorted(entry["metrics"].items()):
            cells = ", ".join(f"{task}: {value:.4g}" for task, value in values.items())
            rows.append(f"| {entry['after_task']} | {display_name(metric)} | {cells} |")
    return ["| after task | metric | per task |", "|---|---|---|", *rows] if rows else []


# ---------------------------------------------------------------------------------------------------------- Hub
def push_to_hub(output_dir: str, repo_id: str, private: bool | None = None, api=None) -> str:
    """Upload a run (its task folders, model cards, config.json and logs; not its checkpoints) to the Hub repo
    `repo_id`, created when missing. `api`: an `huggingface_hub.HfApi` (default a new one, with the token of
    `huggingface-cli login` / HF_TOKEN). Returns the repo id; raises `RunError` when the upload fails."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        repo = api.create_repo(repo_id, exist_ok=True, private=private)
        repo_id = getattr(repo, "repo_id", repo_id)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=output_dir,
            ignore_patterns=HUB_IGNORE,
            commit_message="Upload continual-diffusers run",
        )
    except Exception as err:  # network, token, permissions: one line, the run itself is complete on disk
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        message = f"push to the Hub repo {repo_id} failed ({reason}); the run is complete in {output_dir}"
        raise RunError(message) from err
    logger.info("pushed %s to https://huggingface.co/%s", output_dir, repo_id)
    return repo_id
