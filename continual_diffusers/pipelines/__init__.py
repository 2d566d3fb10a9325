"""Exported task models as diffusers folders: `ContinualDiffusionPipeline` (pipeline.py) over an export, loading an
export back with every check (`load_task_model`, loading.py), the rows a sampling call asks for (labels.py), and the
frozen Stable-Diffusion components main_ldm.py trains on (sd_components.py). Names are imported on first use, so
`load_task_model` does not pull in diffusers' pipeline machinery."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ContinualDiffusionPipeline": "pipeline",
    "ContinualPipelineOutput": "pipeline",
    "load_decode_fn": "loading",
    "load_task_model": "loading",
    "load_vae": "loading",
    "read_spec": "loading",
    "weight_folders": "loading",
    "load_sd_components": "sd_components",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
