"""`TrainConfig`: the knobs of the continual training loop, as one typed bundle (the CLI fills it).

Its fields are main_ddpm.py's training flags (`utils.options.option`: the flag's help, default and bounds are
declared here once, and the CLI's flags are generated from them), and it checks each value against the same bounds
as the flag, so `TrainConfig(output_dir=...)` in Python trains what `python main_ddpm.py --output_dir ...` trains.
The end-of-task samples are a `SamplingConfig` (`validation`: the CLI's sampling flags, the same object) and
`uncond_p` is filled by the CLI from the model flags.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from dataclasses import asdict, dataclass, field

from ..config.sampling import SamplingConfig
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.options import check_options, checked, option, options_group

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")


@options_group("Training", "budget, optimiser, EMA, checkpoints")
@dataclass
class TrainConfig:
    """Settings of the continual training loop (per-task budget, optimiser, EMA, CFG dropout, checkpoints, end-of-task
    samples). Only `output_dir` is required; the defaults are main_ddpm.py's.

    Raises:
        UserInputError: a value outside its CLI flag's bounds or choices (one message naming the field).
    """

    output_dir: str
    seed: int = option(
        42, bounds=b.SEED,
        help="seeds the model initialisation and every random draw (data order, crops, noise, timesteps)",
    )  # fmt: skip
    # Batches and budget (per task). One optimizer step sees train_batch_size × num_processes × grad_accum samples.
    train_batch_size: int = option(16, bounds=b.BATCH_SIZE, help="per device")
    num_epochs: int = option(50, bounds=b.STEPS, help="epochs per task")  # ignored when max_train_steps is set
    max_train_steps: int | None = option(None, bounds=b.STEPS, help="optimizer steps per task (overrides epochs)")
    gradient_accumulation_steps: int = option(
        1, bounds=b.GRAD_ACCUMULATION,
        help="micro-batches per optimizer step (an optimizer step sees batch × processes × this samples)",
    )  # fmt: skip
    # Where replayed rows go. "added": a batch is train_batch_size examples of the task plus the rows replay adds
    # (B·M/N for `concat` replay, M buffered and N task samples): every step takes B new examples and the batch
    # grows with the buffer. "within": a batch is train_batch_size rows in all, of which the strategy's share
    # (`replay_share`: M/(N+M) for `concat`, r for --replay_ratio) are replayed, R_j = ⌊(j+1)ρ⌋ − ⌊jρ⌋ of them in
    # step j with ρ = B·share (`batches.BatchSchedule`), so a step takes B − R_j new examples and an epoch of the
    # task takes ⌈N / (B − ρ)⌉ steps: ⌈(N + M)/B⌉ for `concat`, the earlier implementation's batches of its buffer
    # and task data shuffled together.
    replay_rows: str = option(
        "added", choices=("added", "within"),
        help="added: replayed rows join each batch's --train_batch_size task examples (the batch grows with the "
        "buffer); within: a batch is --train_batch_size rows, replayed ones included (fewer new examples per step, "
        "more steps per epoch: with --buffer_type and no --replay_ratio, buffer and task shuffled together)",
    )  # fmt: skip
    # A batch holds train_batch_size examples of the task plus whatever rows replay appends (`concat` replay: in
    # proportion to the buffer). Its forward/backward runs in passes of at most this many rows whose gradients add
    # up to the whole batch's, so the optimizer step is unchanged (up to float rounding) while the activations held
    # at once (energy models: a double-backward graph per row) stay those of this many rows as the buffer grows.
    rows_per_pass: int | None = option(
        None, bounds=b.BATCH_SIZE,
        help="most rows (task + replayed examples) one forward/backward pass takes; a larger batch runs in several "
        "passes whose gradients add up to the batch's (same step, bounded memory); default: --train_batch_size",
    )  # fmt: skip
    # Optimiser and schedule (a fresh optimizer and schedule per task, built after the strategy's before_task).
    learning_rate: float = option(1e-4, bounds=b.POSITIVE, help="AdamW peak learning rate")
    lr_scheduler: str = option(
        "cosine", choices=LR_SCHEDULERS,
        help="diffusers learning-rate schedule after the warm-up; restarts at every task, over its optimizer steps",
    )  # fmt: skip
    lr_warmup_steps: int = option(0, bounds=b.STEPS_OR_ZERO, help="optimizer steps, per task")
    adam_beta1: float = option(0.95, bounds=b.PROBABILITY, help="AdamW β₁ (gradient momentum)")
    adam_beta2: float = option(0.999, bounds=b.PROBABILITY, help="AdamW β₂ (squared-gradient average)")
    adam_weight_decay: float = option(1e-6, bounds=b.NON_NEGATIVE, help="AdamW decoupled weight decay")
    adam_epsilon: float = option(1e-8, bounds=b.POSITIVE, help="AdamW ε added to the denominator")
    use_8bit_adam: bool = option(False, help="bitsandbytes AdamW8bit (pip install '.[bnb]')")
    max_grad_norm: float = option(
        1.0, bounds=b.POSITIVE, flags=("--clip_grad_norm", "--max_grad_norm"),
        help="clip the global gradient L2 norm to this value before every optimizer step",
    )  # fmt: skip
    # EMA (one EMA over the whole task sequence; evaluation uses it, training weights are restored after).
    use_ema: bool = option(False, help="EMA weights for exports and validation")
    ema_inv_gamma: float = option(
        1.0, bounds=b.POSITIVE,
        help="EMA warm-up: decay(s) = min(1 − (1 + s/inv_gamma)^−power, max_decay) after s optimizer steps",
    )  # fmt: skip
    ema_power: float = option(0.75, bounds=b.POSITIVE, help="EMA warm-up power (see --ema_inv_gamma)")
    ema_max_decay: float = option(0.9999, bounds=b.DECAY, help="upper bound of the EMA decay per step")
    # "task": restart the EMA's warm-up at every task start, so task k's EMA averages task k's training only;
    # "sequence": one EMA over the whole sequence, whose horizon grows with the global step (by task 5 it still
    # holds earlier tasks' weights: naive fine-tuning's mean R[k][k] 0.94 vs 0.97 per task,
    # CHANGELOG.md "Recipe and samplers").
    # The flag is unset by default (the CLI refuses it without --use_ema), and unset means "task".
    ema_scope: str = option(
        "task", choices=("task", "sequence"), unset_none=True,
        help="task (default with --use_ema): restart the EMA warm-up at every task, so task k's EMA averages task "
        "k's training only; sequence: one EMA over the whole task sequence",
    )  # fmt: skip
    # Classifier-free guidance dropout (0 disables CFG training); the CLI: --uncond_p with --classifier_free_guidance.
    uncond_p: float = checked(0.0, bounds=b.PROBABILITY)
    # Checkpoints: resumable state every N optimizer steps (global count) and at each task end.
    checkpointing_steps: int | None = option(
        500, bounds=b.STEPS_OR_ZERO, optional=True,
        help="resumable checkpoint every N optimizer steps (0: only at task ends)",
    )  # fmt: skip
    checkpoints_total_limit: int | None = option(
        None,
        bounds=b.CHECKPOINT_LIMIT,
        help="keep the newest N checkpoints (older ones are deleted); default: keep all",
    )
    # A non-finite loss or gradient: "stop" (NonFiniteError, nothing written) or "skip" the optimizer step.
    on_nonfinite: str = option(
        "stop", choices=("stop", "skip"),
        help="a NaN/inf loss or gradient: stop (exit 3, the last good checkpoint kept) or skip that optimizer step",
    )  # fmt: skip
    # The end-of-task samples (grids, and the end-of-task evaluation's sampler): scheduler, steps, η, guidance (used
    # only when uncond_p > 0), images per seen class or prompt (num_samples), the prompts of text models.
    validation: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        if isinstance(self.output_dir, os.PathLike):
            self.output_dir = os.fspath(self.output_dir)
        if not isinstance(self.output_dir, str):
            raise UserInputError(f"TrainConfig.output_dir must be a folder path, got {self.output_dir!r}")
        check_options(self)
        if not isinstance(self.validation, SamplingConfig):
            kind = type(self.validation).__name__
            raise UserInputError(f"TrainConfig.validation must be a SamplingConfig, got {kind}")
        if not all(isinstance(p, str) for p in self.validation.validation_prompts or []):
            raise UserInputError("TrainConfig.validation.validation_prompts must be a list of strings")

    @property
    def validation_prompts(self) -> list[str]:
        """The end-of-task prompts of text models ([] for other models)."""
        return list(self.validation.validation_prompts or [])

    def to_dict(self) -> dict:
        return asdict(self)


# The end-of-task sample settings TrainConfig held as fields of its own before `validation` (old name → the
# SamplingConfig field): still accepted as keywords and readable as attributes, with a DeprecationWarning.
MOVED_TO_VALIDATION = {
    "eval_batch_size": "num_samples",
    "validation_scheduler": "scheduler",
    "num_inference_steps": "num_inference_steps",
    "ddim_eta": "ddim_eta",
    "guidance_scale": "guidance_scale",
}
_dataclass_init = TrainConfig.__init__


@functools.wraps(_dataclass_init)
def _init(self, *args, **kwargs) -> None:
    moved = {name: kwargs.pop(name) for name in list(kwargs) if name in MOVED_TO_VALIDATION}
    if "validation_prompts" in kwargs:
        moved["validation_prompts"] = kwargs.pop("validation_prompts")
    if moved:
        warnings.warn(
            f"TrainConfig({', '.join(moved)}=...) is deprecated: pass validation=SamplingConfig(...)",
            DeprecationWarning,
            stacklevel=2,
        )
        values = {MOVED_TO_VALIDATION.get(name, name): value for name, value in moved.items()}
        if values.get("validation_prompts") == []:  # TrainConfig's old "no prompts"; SamplingConfig's is None
            values["validation_prompts"] = None
        kwargs["validation"] = dataclasses.replace(kwargs.get("validation") or SamplingConfig(), **values)
    _dataclass_init(self, *args, **kwargs)


def _moved(old: str, new: str) -> property:
    def get(self):
        warnings.warn(f"TrainConfig.{old} is deprecated: use .validation.{new}", DeprecationWarning, stacklevel=2)
        return getattr(self.validation, new)

    return property(get, doc=f"Deprecated: `validation.{new}`.")


TrainConfig.__init__ = _init
for _old, _new in MOVED_TO_VALIDATION.items():
    setattr(TrainConfig, _old, _moved(_old, _new))
