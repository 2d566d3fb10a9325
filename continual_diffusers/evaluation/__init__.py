"""Evaluation: an oracle classifier judges generated samples per seen task (`ContinualEvaluator`), the continual
matrices and their summaries (`continual_metrics`, read through `directions`), memorisation, diversity and buffer
attraction of samples (`memorisation`), the report folder (`ContinualReport`) and the end-of-task
evaluation the trainer calls (`EndOfTaskEvaluation`). Command line: `python -m continual_diffusers.evaluation`."""

from .classifier import OracleCNN, load_oracle, oracle_accuracy, predict, save_oracle, train_oracle
from .continual_metrics import average_final, average_incremental, backward_transfer, forgetting, summarize
from .directions import display_name
from .evaluator import HIGHER_IS_BETTER, ContinualEvaluator
from .memorisation import (
    buffer_attraction,
    buffered_mask,
    copy_fraction,
    nearest_training_distance_ratio,
    precision_recall,
)
from .metrics import (
    accuracy,
    class_histogram_kl,
    frechet_distance,
    kernel_inception_distance,
    kernel_inception_distance_with_sd,
    kid_subsets,
)
from .report import ContinualReport
from .task_eval import EndOfTaskEvaluation

__all__ = [
    "HIGHER_IS_BETTER",
    "ContinualEvaluator",
    "ContinualReport",
    "EndOfTaskEvaluation",
    "OracleCNN",
    "accuracy",
    "average_final",
    "average_incremental",
    "backward_transfer",
    "buffer_attraction",
    "buffered_mask",
    "class_histogram_kl",
    "copy_fraction",
    "display_name",
    "forgetting",
    "frechet_distance",
    "kernel_inception_distance",
    "kernel_inception_distance_with_sd",
    "kid_subsets",
    "load_oracle",
    "nearest_training_distance_ratio",
    "oracle_accuracy",
    "precision_recall",
    "predict",
    "save_oracle",
    "summarize",
    "train_oracle",
]
