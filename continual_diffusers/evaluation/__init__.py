"""Evaluation: an oracle classifier judges generated samples per seen task (`ContinualEvaluator`), the continual
matrices and their summaries (`continual_metrics`), the report folder (`ContinualReport`) and the end-of-task
evaluation the trainer calls (`EndOfTaskEvaluation`). Command line: `python -m continual_diffusers.evaluation`."""

from .classifier import OracleCNN, load_oracle, oracle_accuracy, predict, save_oracle, train_oracle
from .continual_metrics import average_final, average_incremental, backward_transfer, forgetting, summarize
from .evaluator import HIGHER_IS_BETTER, ContinualEvaluator
from .metrics import accuracy, class_histogram_kl, frechet_distance, kernel_inception_distance
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
    "class_histogram_kl",
    "forgetting",
    "frechet_distance",
    "kernel_inception_distance",
    "load_oracle",
    "oracle_accuracy",
    "predict",
    "save_oracle",
    "summarize",
    "train_oracle",
]
