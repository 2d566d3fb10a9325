"""Assembling a `ContinualTrainer` from library objects, with the checks the CLI makes: `ContinualTrainer.build`.

`check_model_fits` is also run by `ContinualTrainer.__init__`, so a trainer built by hand gets it too: a class-
conditional model trained with classifier-free guidance needs the UNet's reserved null-class row, and without that
check the first dropped label fails deep inside the UNet with a bare `IndexError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable

import torch

from ..data import ImageTransform, Task, TaskDataset, TaskSequence
from ..models.conditioning import Unconditional, check_unet_takes
from ..models.denoiser import EnergyModel, ScoreModel
from ..models.spec import ModelSpec
from ..objectives import DenoisingObjective, default_prediction_type
from ..strategies import ContinualStrategy, Naive
from ..utils.errors import UserInputError
from ..utils.files import check_writable
from .train_config import TrainConfig


def as_task_sequence(tasks: TaskSequence | Iterable[Task]) -> TaskSequence:
    """`tasks` as a `TaskSequence` (a list or tuple of `Task`s is validated and sorted by task id)."""
    return tasks if isinstance(tasks, TaskSequence) else TaskSequence(tuple(tasks))


def as_denoiser(model: torch.nn.Module) -> torch.nn.Module:
    """A denoiser (`ScoreModel` / `EnergyModel`, see `make_denoiser`) as is; a bare diffusers UNet as `ScoreModel`."""
    if isinstance(model, (ScoreModel, EnergyModel)):
        return model
    if hasattr(model, "config") and hasattr(model.config, "sample_size"):
        return ScoreModel(model)
    raise UserInputError(
        f"model must be a diffusers UNet or a denoiser from make_denoiser(unet, ...), got {type(model).__name__}"
    )


def check_model_fits(denoiser: torch.nn.Module, conditioning, cfg: TrainConfig) -> None:
    """The UNet must take the condition the trainer will give it (`Conditioning.unet_mismatch`: class embeddings
    for the classes + the CFG null class, none for other kinds, the text encoder's or the slots' width as
    cross_attention_dim), and CFG dropout (`cfg.uncond_p > 0`) needs a null condition; `UserInputError` with what
    to change otherwise."""
    if cfg.uncond_p > 0 and not conditioning.supports_null and conditioning.conditional:
        raise UserInputError(
            f"TrainConfig.uncond_p={cfg.uncond_p} trains classifier-free guidance, which needs a null condition: "
            f"this {conditioning.description} conditioning has none (build it with its null condition, e.g. "
            "ClassConditioning(num_classes, null_class=True) or SlotEncoder(null_slots=True); or uncond_p=0)"
        )
    fields = ", ".join(f"{k}={v!r}" for k, v in conditioning.unet_fields().items())
    check_unet_takes(conditioning, denoiser.unet.config, "the UNet", f": build it with UNetSpec({fields}, ...)")


def check_run(tasks: TaskSequence, denoiser, conditioning, objective: DenoisingObjective, cfg: TrainConfig, vae):
    """What the CLI checks between its flags and the data, for objects built in Python."""
    conditioning.check_labels(tasks)
    conditioning.check_training(tasks, cfg.validation_prompts)
    if isinstance(denoiser, EnergyModel) and objective.prediction_type != "epsilon":
        raise UserInputError("an EnergyModel defines ε̂ = ∇ₓE, so it needs prediction_type 'epsilon'")
    scheduled = objective.scheduler.config.get("prediction_type", "epsilon")
    if scheduled != objective.prediction_type:  # samplers and exports read the scheduler's config
        raise UserInputError(
            f"the objective trains prediction_type {objective.prediction_type!r} but its scheduler's config says "
            f"{scheduled!r} (samplers read the scheduler): build DDPMScheduler(prediction_type="
            f"{objective.prediction_type!r})"
        )
    if objective.scheduler.config.get("rescale_betas_zero_snr") and objective.prediction_type == "epsilon":
        raise UserInputError(
            "a zero-terminal-SNR schedule (rescale_betas_zero_snr) cannot recover x₀ from ε at ᾱ_T = 0: use "
            "prediction_type 'v_prediction' (or 'sample')"
        )
    config = denoiser.unet.config
    if vae is None and config.in_channels != tasks.num_channels:
        raise UserInputError(f"the UNet takes {config.in_channels} channels but the images have {tasks.num_channels}")
    check_model_fits(denoiser, conditioning, cfg)


def tracker_config(cfg: TrainConfig) -> dict:
    """The scalar settings of `cfg` (trackers reject lists)."""
    return {k: v for k, v in cfg.to_dict().items() if isinstance(v, (int, float, str, bool))}


def make_accelerator(
    cfg: TrainConfig, mixed_precision: str = "no", log_with: str | None = None, logging_dir: str = "logs"
):
    """The run's `Accelerator` (CLI and `build`): gradient accumulation from `cfg`, logs under
    output_dir/`logging_dir`. A `log_with` tracker whose package is not installed is refused (`check_tracker`)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    from ..config.run import check_tracker

    check_tracker(log_with)

    return Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=log_with,
        project_config=ProjectConfiguration(
            project_dir=cfg.output_dir, logging_dir=os.path.join(cfg.output_dir, logging_dir)
        ),
    )


def assemble(
    tasks: TaskSequence | Iterable[Task],
    cfg: TrainConfig,
    model: torch.nn.Module,
    conditioning=None,
    strategy: ContinualStrategy | None = None,
    objective: DenoisingObjective | None = None,
    transform: ImageTransform | None = None,
    make_dataset: Callable[[Task], TaskDataset] | None = None,
    accelerator=None,
    mixed_precision: str = "no",
    log_with: str | None = None,
    metadata: dict | None = None,
    **trainer_kwargs,
) -> dict:
    """`ContinualTrainer` keyword arguments, validated; nothing is written. See `ContinualTrainer.build`."""
    from diffusers import DDPMScheduler

    tasks = as_task_sequence(tasks)
    denoiser = as_denoiser(model)
    conditioning = Unconditional() if conditioning is None else conditioning
    if objective is None:
        prediction_type = default_prediction_type(isinstance(denoiser, EnergyModel))
        objective = DenoisingObjective(DDPMScheduler(prediction_type=prediction_type), prediction_type)
    check_run(tasks, denoiser, conditioning, objective, cfg, trainer_kwargs.get("vae"))
    resolution = transform.resolution if transform is not None else denoiser.unet.config.sample_size
    transform = transform or ImageTransform(resolution, center_crop=False)  # the CLI's default: random crop
    accelerator = accelerator or make_accelerator(cfg, mixed_precision, log_with)
    spec = ModelSpec.for_run(
        tasks, conditioning, energy_type=getattr(denoiser, "energy_type", None),
        prediction_type=objective.prediction_type, classifier_free_guidance=cfg.uncond_p > 0, resolution=resolution,
        validation_prompts=cfg.validation_prompts,
    )  # fmt: skip
    if metadata:
        spec = spec.updated(metadata, "metadata")
    return dict(
        accelerator=accelerator,
        denoiser=denoiser.to(accelerator.device),
        conditioning=conditioning,
        objective=objective,
        strategy=Naive() if strategy is None else strategy,
        cfg=cfg,
        make_dataset=make_dataset or (lambda task: TaskDataset(task, transform)),
        spec=spec,
        **trainer_kwargs,
    )


def start_run(trainer, project_name: str = "continual_diffusers") -> None:
    """After every check: create output_dir, write its config.json, start the trackers, move text encoder and VAE
    to the device (what the CLI does before `fit`)."""
    acc, cfg = trainer.accelerator, trainer.cfg
    if acc.is_main_process:
        check_writable(cfg.output_dir)
        resolved = {"config": {"train": cfg.to_dict()}, "model": trainer.spec.to_json()}
        with open(os.path.join(cfg.output_dir, "config.json"), "w") as fh:
            json.dump(resolved, fh, indent=2, default=str)
    acc.wait_for_everyone()
    if acc.log_with:
        acc.init_trackers(project_name, config=tracker_config(cfg))
    trainer.conditioning.to(acc.device)
    if trainer.vae is not None:
        trainer.vae.to(acc.device)


def build(
    cls,
    tasks: TaskSequence | Iterable[Task],
    cfg: TrainConfig,
    model: torch.nn.Module,
    *,
    project_name: str = "continual_diffusers",
    **options,
):
    """A trainer from library objects, checked as the CLI checks its flags, with the accelerator and the model spec
    (`ModelSpec`, each export's continual_diffusers.json) made for you. Creates `cfg.output_dir` and writes its
    config.json (nothing else until training).

    Args:
        cls: the trainer class: this is `ContinualTrainer.build` (a classmethod), called as such.
        tasks: the run's tasks (a `TaskSequence`, or a list of `Task`s): the export metadata lists their classes.
        cfg: training settings; `cfg.uncond_p > 0` trains classifier-free guidance.
        model: a diffusers UNet (`build_unet(UNetSpec(...))`, wrapped as `ScoreModel`) or a denoiser from
            `make_denoiser` (energy or slot models).
        project_name: the trackers' project.
    Keyword options (`assemble`'s):
        conditioning: default `Unconditional()`; `ClassConditioning(num_classes, null_class=True)` for CFG.
        strategy: default `Naive()` (sequential fine-tuning).
        objective: default ε-prediction over diffusers' `DDPMScheduler()` (1000 linear steps, the CLI's).
        transform: default `ImageTransform(unet sample_size, center_crop=False)`, the CLI's.
        make_dataset: default `TaskDataset(task, transform)`.
        accelerator: default a new one with `mixed_precision` and `log_with` ("tensorboard", "wandb" or None),
            logging under output_dir/logs.
        metadata: continual_diffusers.json entries added to (or replacing) the run's `ModelSpec`, e.g.
            {"data_path": task file}; checked as a file's would be.
        further options: `text_components`, `task_eval`, `decode_fn`, `vae` (see the class).

    Raises:
        UserInputError: labels that do not fit the conditioning, a UNet that does not take the condition, an
            unwritable output_dir, ...
    """
    trainer = cls(**assemble(tasks, cfg, model, **options))
    start_run(trainer, project_name)
    return trainer
