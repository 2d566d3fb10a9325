"""Continual-Diffusers: continual learning with diffusion models, built on Hugging Face diffusers.

Nothing happens on import: the names below are imported from their sub-package the first time they are used
(`continual_diffusers.ContinualTrainer`, `from continual_diffusers import ContinualTrainer`), so
`import continual_diffusers` stays cheap. The public API, by layer (README "Python API" has a runnable example):

- data: `load_split_digits`, `load_tasks`, `save_tasks`, `tasks_from_dict`, `Task`, `TaskSequence` (indexed by task
  id, not position), `TaskDataset`, `ImageTransform`, `ReplayBuffer` and its policies `TaskBalanced`, `Reservoir`;
- models: `UNetSpec`, `build_unet`, `make_denoiser`, `ScoreModel`, `EnergyModel`, the conditionings
  `Unconditional`, `ClassConditioning`, `TextConditioning`, `SlotConditioning` (and `Conditioning` to write a kind),
  `ModelSpec` (a task model's description: its continual_diffusers.json);
- objectives: `DenoisingObjective`, `default_prediction_type` (v for score models, ε for energy models);
- strategies: `Naive`, `Replay`, `EWC`, `SynapticIntelligence`, `GenerativeReplay`, `CombinedStrategy`,
  `LoRAAdapters`, and `ContinualStrategy` to write your own; their options `ReplayConfig`, `EWCConfig`, `SIConfig`,
  `GenerativeReplayConfig`, `LoRAConfig` (`.build(StrategyContext(tasks, ...))`);
- config: the CLI's typed component configs `DataConfig`, `ModelConfig`, `ObjectiveConfig`, `SamplingConfig`;
- sampling: `generate_samples`, `SamplerOptions`, `CompositionOptions`, `MCMCOptions`, `sample_ancestral`;
- training: `TrainConfig`, `ContinualTrainer` (`ContinualTrainer.build(...)`, then `train_task` per task or `fit`);
- pipelines: `ContinualDiffusionPipeline` (a diffusers pipeline: `from_pretrained(output_dir/task_k)`, then call it),
  `load_task_model` (an export back as denoiser, conditioning, schedule and `ModelSpec`);
- evaluation: `ContinualEvaluator`, `EndOfTaskEvaluation`, `train_oracle`, `load_oracle`, `save_oracle`;
- errors: `UserInputError` (bad input, raised before anything is written), `RunError`.

Layers, lowest first. A package imports only packages of lower layers (never one of its own layer, never one
above; lazy imports inside functions count too), tests/test_layering.py checks it by parsing every import:

    0  utils
    1  data
    2  models
    3  objectives  sampling
    4  pipelines  strategies
    5  config
    6  training  evaluation
    7  cli

The entry scripts (main_ddpm.py, main_ldm.py, evaluate.py, ...) sit above cli, and nothing imports them. A
package's `__main__` (`python -m continual_diffusers.evaluation`, `.data`) is an entry point at cli's layer: it may
import any package below cli (the evaluation report reads a run's checkpoints), and no module imports it.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0.dev0"

# public name → the sub-package that defines it (each sub-package's __init__ exports it too)
_EXPORTS = {
    "data": (
        "ImageTransform",
        "Reservoir",
        "ReplayBuffer",
        "Task",
        "TaskBalanced",
        "TaskDataset",
        "TaskFileError",
        "TaskSequence",
        "load_split_digits",
        "load_tasks",
        "save_tasks",
        "tasks_from_dict",
    ),
    "models": (
        "ClassConditioning",
        "Conditioning",
        "EnergyModel",
        "ScoreModel",
        "SlotConditioning",
        "TextConditioning",
        "ModelSpec",
        "UNetSpec",
        "Unconditional",
        "build_unet",
        "make_denoiser",
    ),
    "objectives": ("DenoisingObjective", "default_prediction_type"),
    "strategies": (
        "CombinedStrategy",
        "ContinualStrategy",
        "EWC",
        "EWCConfig",
        "GenerativeReplay",
        "GenerativeReplayConfig",
        "LoRAAdapters",
        "LoRAConfig",
        "Naive",
        "Replay",
        "ReplayConfig",
        "SIConfig",
        "StrategyContext",
        "SynapticIntelligence",
    ),
    "config": ("DataConfig", "ModelConfig", "ObjectiveConfig", "SamplingConfig"),
    "sampling": ("CompositionOptions", "MCMCOptions", "SamplerOptions", "generate_samples", "sample_ancestral"),
    "training": ("ContinualTrainer", "TrainConfig"),
    "pipelines": ("ContinualDiffusionPipeline", "load_task_model"),
    "evaluation": ("ContinualEvaluator", "EndOfTaskEvaluation", "load_oracle", "save_oracle", "train_oracle"),
    "utils": ("RunError", "UserInputError"),
}
_WHERE = {name: package for package, names in _EXPORTS.items() for name in names}
# Earlier public names, still importable (their sub-package warns that they are deprecated).
_RENAMED = {"MCMCConfig": "sampling"}  # deprecated alias

__all__ = ["__version__", *sorted(_WHERE)]


def __getattr__(name: str):
    """Import a public name from its sub-package on first use (PEP 562), then keep it in the module."""
    if name in _RENAMED:
        return getattr(importlib.import_module(f".{_RENAMED[name]}", __name__), name)
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
