"""Training: `ContinualTrainer` (one task after another under accelerate, calling the strategy hooks; `build` makes
one from library objects), its settings `TrainConfig`, and the checkpoint helpers used to resume a run."""

from .build import check_model_fits, make_accelerator
from .checkpoint import list_checkpoints, resolve_resume
from .train_config import TrainConfig
from .trainer import ContinualTrainer, Position

__all__ = [
    "ContinualTrainer",
    "Position",
    "TrainConfig",
    "check_model_fits",
    "list_checkpoints",
    "make_accelerator",
    "resolve_resume",
]
