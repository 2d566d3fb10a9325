"""`TrainConfig`: the knobs of the continual training loop, as one typed bundle (the CLI fills it).

Its defaults are the CLI's (main_ddpm.py), and it checks each value against the same bounds as the CLI's flag, so
`TrainConfig(output_dir=...)` in Python trains what `python main_ddpm.py --output_dir ...` trains.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from ..sampling.ancestral import DEFAULT_NUM_INFERENCE_STEPS, DEFAULT_SCHEDULER, SCHEDULERS
from ..utils import bounds as b
from ..utils.errors import UserInputError

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
# field → bounds of the CLI flag that sets it; OPTIONAL fields may also be None (no limit / off).
BOUNDS = {
    "seed": b.SEED,
    "train_batch_size": b.BATCH_SIZE,
    "num_epochs": b.STEPS,
    "max_train_steps": b.STEPS,
    "gradient_accumulation_steps": b.GRAD_ACCUMULATION,
    "learning_rate": b.POSITIVE,
    "lr_warmup_steps": b.STEPS_OR_ZERO,
    "adam_beta1": b.PROBABILITY,
    "adam_beta2": b.PROBABILITY,
    "adam_weight_decay": b.NON_NEGATIVE,
    "adam_epsilon": b.POSITIVE,
    "max_grad_norm": b.POSITIVE,
    "ema_inv_gamma": b.POSITIVE,
    "ema_power": b.POSITIVE,
    "ema_max_decay": b.DECAY,
    "uncond_p": b.PROBABILITY,
    "checkpointing_steps": b.STEPS_OR_ZERO,
    "checkpoints_total_limit": b.CHECKPOINT_LIMIT,
    "eval_batch_size": b.IMAGES_PER_ROW,
    "num_inference_steps": b.TIMESTEPS,
    "ddim_eta": b.UNIT,
    "guidance_scale": b.NON_NEGATIVE,
}
CHOICES = {
    "lr_scheduler": LR_SCHEDULERS,
    "ema_scope": ("task", "sequence"),
    "on_nonfinite": ("stop", "skip"),
    "validation_scheduler": tuple(sorted(SCHEDULERS)),
}
OPTIONAL = ("max_train_steps", "checkpointing_steps", "checkpoints_total_limit")


@dataclass
class TrainConfig:
    """Settings of the continual training loop (per-task budget, optimiser, EMA, CFG dropout, checkpoints, end-of-task
    samples). Only `output_dir` is required; the defaults are main_ddpm.py's.

    Raises:
        UserInputError: a value outside its CLI flag's bounds or choices (one message naming the field).
    """

    output_dir: str
    seed: int = 42
    # Batches and budget (per task). One optimizer step sees train_batch_size × num_processes × grad_accum samples.
    train_batch_size: int = 16
    num_epochs: int = 50  # epochs per task; ignored when max_train_steps is set
    max_train_steps: int | None = None  # optimizer steps per task
    gradient_accumulation_steps: int = 1
    # Optimiser and schedule (a fresh optimizer and schedule per task, built after the strategy's before_task).
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 0  # optimizer steps
    adam_beta1: float = 0.95
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-6
    adam_epsilon: float = 1e-8
    use_8bit_adam: bool = False
    max_grad_norm: float = 1.0
    # EMA (one EMA over the whole task sequence; evaluation uses it, training weights are restored after).
    use_ema: bool = False
    ema_inv_gamma: float = 1.0
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999
    # "task": restart the EMA's warm-up at every task start, so task k's EMA averages task k's training only;
    # "sequence": one EMA over the whole sequence, whose horizon grows with the global step (by task 5 it still
    # holds earlier tasks' weights: naive fine-tuning's mean R[k][k] 0.94 vs 0.97 per task, README "Recipe").
    ema_scope: str = "task"
    # Classifier-free guidance dropout (0 disables CFG training).
    uncond_p: float = 0.0
    # Checkpoints: resumable state every N optimizer steps (global count) and at each task end.
    checkpointing_steps: int | None = 500
    checkpoints_total_limit: int | None = None
    # A non-finite loss or gradient: "stop" (NonFiniteError, nothing written) or "skip" the optimizer step.
    on_nonfinite: str = "stop"
    # Validation samples written at the end of each task.
    eval_batch_size: int = 8  # images per seen class / per prompt
    validation_scheduler: str = DEFAULT_SCHEDULER
    num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS
    ddim_eta: float = 0.0  # DDIM's η (validation_scheduler "ddim" only)
    guidance_scale: float = 2.0  # CFG scale of the end-of-task samples; used only when uncond_p > 0
    validation_prompts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.output_dir, os.PathLike):
            self.output_dir = os.fspath(self.output_dir)
        if not isinstance(self.output_dir, str):
            raise UserInputError(f"TrainConfig.output_dir must be a folder path, got {self.output_dir!r}")
        for name, bounds in BOUNDS.items():
            value = getattr(self, name)
            if value is not None or name not in OPTIONAL:
                bounds.check(f"TrainConfig.{name}", value)
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise UserInputError(f"TrainConfig.{name} must be one of {list(choices)}, got {getattr(self, name)!r}")
        prompts = self.validation_prompts
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise UserInputError("TrainConfig.validation_prompts must be a list of strings")

    def to_dict(self) -> dict:
        return asdict(self)
