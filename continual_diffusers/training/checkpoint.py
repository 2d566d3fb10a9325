"""Resumable checkpoints and per-task exports, written atomically and without pickled code.

Layout:
    output_dir/checkpoint-{global_step}/      resumable state (training_state.json is written last = complete)
        model.safetensors  ema.pt  optimizer.pt  lr_scheduler.pt  [scaler.pt]
        strategy.safetensors  strategy.json  training_state.json
    output_dir/task_{k}/                      the model after task k, in diffusers format
        unet/  [unet_ema/]  scheduler/  [text_encoder/ tokenizer/]  continual_diffusers.json
        latent models add vae/ and model_index.json (a StableDiffusionPipeline), LoRA runs lora/task_<j>/

Every directory is first written as `<name>.tmp`, fsync'ed, then renamed, so a crash never leaves a half-written
directory under its final name, and `latest` only considers directories whose `training_state.json` exists.
`.pt` files hold only tensors and numbers and are read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable

import torch
from safetensors.torch import load_file, save_file

from ..utils.errors import UserInputError
from ..utils.logging import get_logger

logger = get_logger(__name__)
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"


def _fsync_tree(path: str) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())


def write_atomically(final_dir: str, write_fn: Callable[[str], None]) -> str:
    """Run `write_fn(tmp_dir)`, fsync it, then rename tmp_dir → final_dir (replacing an older one)."""
    tmp = final_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    write_fn(tmp)
    _fsync_tree(tmp)
    if os.path.exists(final_dir):
        shutil.rmtree(final_dir)
    os.replace(tmp, final_dir)
    return final_dir


def split_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a flat strategy state into tensors (→ safetensors) and JSON-able values."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
    rest = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    return tensors, rest


def save_checkpoint(output_dir: str, global_step: int, parts: dict, training_state: dict) -> str:
    """Write checkpoint-{global_step}. `parts`: model_state, ema_state|None, optimizer_state, lr_scheduler_state,
    scaler_state|None, strategy_state."""

    def write(tmp: str) -> None:
        save_file({k: v.contiguous() for k, v in parts["model_state"].items()}, os.path.join(tmp, "model.safetensors"))
        for name in ("ema_state", "optimizer_state", "lr_scheduler_state", "scaler_state"):
            if parts.get(name) is not None:
                torch.save(parts[name], os.path.join(tmp, name.replace("_state", "") + ".pt"))
        tensors, rest = split_state(parts["strategy_state"])
        save_file(tensors, os.path.join(tmp, "strategy.safetensors"))
        _write_json(os.path.join(tmp, "strategy.json"), rest)
        _write_json(os.path.join(tmp, STATE_FILE), training_state)  # last: marks the checkpoint complete

    return write_atomically(os.path.join(output_dir, f"checkpoint-{global_step}"), write)


def load_checkpoint(path: str) -> dict:
    """Read what `save_checkpoint` wrote (tensors on CPU)."""
    parts = {"model_state": load_file(os.path.join(path, "model.safetensors"))}
    for name in ("ema", "optimizer", "lr_scheduler", "scaler"):
        file = os.path.join(path, name + ".pt")
        parts[name + "_state"] = torch.load(file, weights_only=True) if os.path.exists(file) else None
    strategy = dict(load_file(os.path.join(path, "strategy.safetensors")))
    strategy.update(_read_json(os.path.join(path, "strategy.json")))
    parts["strategy_state"] = strategy
    parts["training_state"] = _read_json(os.path.join(path, STATE_FILE))
    return parts


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints as (global_step, path), oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_RE.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isfile(os.path.join(path, STATE_FILE)):
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_resume(output_dir: str, resume: str | None) -> str | None:
    """`latest` → newest complete checkpoint (or None: start fresh); a path must be a complete checkpoint."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            logger.info("--resume_from_checkpoint latest: no checkpoint in %s, starting from scratch", output_dir)
        return found[-1][1] if found else None
    if not os.path.isfile(os.path.join(resume, STATE_FILE)):
        raise UserInputError(f"--resume_from_checkpoint {resume}: not a complete checkpoint (no {STATE_FILE})")
    return resume


def prune_checkpoints(output_dir: str, total_limit: int | None) -> None:
    """Keep the newest `total_limit` complete checkpoints; the newest one is never removed."""
    if not total_limit:
        return
    found = list_checkpoints(output_dir)
    for _, path in found[: max(0, len(found) - max(total_limit, 1))]:
        logger.info("removing old checkpoint %s (--checkpoints_total_limit %d)", path, total_limit)
        shutil.rmtree(path, ignore_errors=True)


def export_task(task_dir: str, unet, ema_unet, noise_scheduler, metadata: dict, text=None, vae=None) -> str:
    """Write output_dir/task_{k}/ in diffusers format. `text`: (tokenizer, text_encoder) for text models.

    Latent models (`vae` given) also get vae/ and, for score models, a model_index.json, so the folder is a
    complete StableDiffusionPipeline. A UNet carrying LoRA adapters is exported with its active adapters merged
    into unet/ (a plain UNet), and every adapter is also written to lora/<adapter>/ in diffusers' LoRA format."""
    from ..strategies.lora import has_adapters, merged_copy, save_lora_adapters

    def write(tmp: str) -> None:
        meta = dict(metadata)
        plain, plain_ema = unet, ema_unet
        if has_adapters(unet):
            active = list(unet.active_adapters())
            sizes = save_lora_adapters(unet, sorted(unet.peft_config), os.path.join(tmp, "lora"))
            meta["lora"] = dict(metadata.get("lora", {}), active_adapters=active, adapter_bytes=sizes)
            plain = merged_copy(unet, active)
            plain_ema = None if ema_unet is None else merged_copy(ema_unet, active)
        plain.save_pretrained(os.path.join(tmp, "unet"))
        if plain_ema is not None:
            plain_ema.save_pretrained(os.path.join(tmp, "unet_ema"))
        noise_scheduler.save_pretrained(os.path.join(tmp, "scheduler"))
        if text is not None:
            text[0].save_pretrained(os.path.join(tmp, "tokenizer"))
            text[1].save_pretrained(os.path.join(tmp, "text_encoder"))
        if vae is not None:
            vae.save_pretrained(os.path.join(tmp, "vae"))
            if not metadata.get("energy_type"):  # a stock pipeline would read an energy UNet's f as ε: don't offer it
                _write_json(os.path.join(tmp, "model_index.json"), _model_index(plain, noise_scheduler, text, vae))
        _write_json(os.path.join(tmp, "continual_diffusers.json"), meta)

    return write_atomically(task_dir, write)


def _model_index(unet, scheduler, text, vae) -> dict:
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


def _read_json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)
