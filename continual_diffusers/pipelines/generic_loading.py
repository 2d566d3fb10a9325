"""What an export needs so that stock `diffusers.DiffusionPipeline.from_pretrained(task_dir)` loads it.

diffusers resolves `model_index.json`'s `_class_name` to a class of the `diffusers` package, or, in its custom-
pipeline form `[module, class]`, to `class` of the file `<module>.py` next to model_index.json
(`diffusers.pipelines.pipeline_loading_utils._resolve_custom_pipeline_and_cls`). So an export names:

- unconditional pixel score models: `"DDPMPipeline"`, diffusers' own pipeline (no code from the folder; the
  strided ancestral DDPM sampler over the exported UNet and schedule);
- every other pixel model: `["pipeline", "ContinualDiffusionPipeline"]`, with `pipeline.py` (`PIPELINE_PY`): two
  lines that import `ContinualDiffusionPipeline` from the installed `continual_diffusers`, and the export's
  `ModelSpec` as the pipeline's `metadata` entry (diffusers passes model_index.json's non-component entries to
  `__init__`, as it does StableDiffusionPipeline's `requires_safety_checker`).

Security: a local `pipeline.py` is code. diffusers runs it only when the caller passes `trust_remote_code=True`
(else it raises, naming the file), so `DiffusionPipeline.from_pretrained(task_dir, trust_remote_code=True)` is the
generic call; trust only folders whose pipeline.py is the two lines below. Our own loaders
(`ContinualDiffusionPipeline.from_pretrained`, `load_task_model`, evaluate.py) never read `_class_name`, `metadata`
or `pipeline.py`: they read continual_diffusers.json and the component folders, checked (`pipelines.loading`).
"""

from __future__ import annotations

import os

from ..models.spec import ModelSpec

PIPELINE_MODULE = "pipeline"
PIPELINE_PY = '''"""diffusers' custom-pipeline entry of a Continual-Diffusers export (model_index.json's _class_name
["pipeline", "ContinualDiffusionPipeline"]): DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
builds ContinualDiffusionPipeline of the continual_diffusers package installed in the environment."""

from continual_diffusers.pipelines.pipeline import ContinualDiffusionPipeline  # noqa: F401
'''


def stock_pipeline_name(spec: ModelSpec) -> str | None:
    """The diffusers pipeline that samples the export as it was trained, or None when only ours does."""
    if spec.conditioning == "none" and not spec.energy_type and spec.latent is None:
        return "DDPMPipeline"
    return None


def generic_model_index(index: dict, spec: ModelSpec) -> dict:
    """`index` (model_index.json as diffusers' save_pretrained wrote it, absent components dropped) naming the
    class `DiffusionPipeline.from_pretrained` should build, with the spec it needs."""
    stock = stock_pipeline_name(spec)
    if stock is not None:
        return {**index, "_class_name": stock}
    return {**index, "_class_name": [PIPELINE_MODULE, "ContinualDiffusionPipeline"], "metadata": spec.to_json()}


def write_pipeline_module(save_directory: str | os.PathLike, spec: ModelSpec) -> None:
    """pipeline.py next to model_index.json when the export names our pipeline (`generic_model_index`)."""
    if stock_pipeline_name(spec) is None:
        with open(os.path.join(save_directory, f"{PIPELINE_MODULE}.py"), "w") as fh:
            fh.write(PIPELINE_PY)
