"""End-of-task evaluation: after task k, score every seen task with the oracle and rewrite the report folder."""

from __future__ import annotations

import os

from ..utils.faults import fault_point
from .directions import display_name
from .evaluator import ContinualEvaluator
from .report import ContinualReport


def describe_sampler(options) -> str:
    """The sampler behind the evaluation's samples, as report.md states it, e.g. "ddpm, 25 steps, guidance 2.0,
    seed 0"."""
    text = f"{options.scheduler}, {options.num_inference_steps} steps"
    if options.scheduler == "ddim":
        text += f", η = {options.eta}"
    text += f", guidance {options.guidance_scale}" if options.guidance_scale != 1.0 else ", no guidance"
    if options.mcmc is not None:
        text += ", with annealed MCMC"
    return f"{text}, seed {options.seed}"


class EndOfTaskEvaluation:
    """Callable used by the trainer (and by the standalone `report` command) after each task."""

    # The name a reader sees for each metric: model cards (written by training, below evaluation) read it here.
    display_name = staticmethod(display_name)

    def __init__(
        self, evaluator: ContinualEvaluator, conditioning, train_scheduler, classes_per_task: dict, output_dir: str
    ):
        self.evaluator = evaluator
        self.conditioning = conditioning
        self.train_scheduler = train_scheduler
        self.classes_per_task = classes_per_task
        self.output_dir = output_dir
        self.report = ContinualReport(sampler=describe_sampler(evaluator.options))

    def __call__(
        self, model, task_id: int, seen_tasks: list[int], device, buffered: dict | None = None
    ) -> dict[str, dict[int, float]]:
        """Evaluate `model` after task `task_id`; `buffered`: the replay buffer it trained with (`evaluate`)."""
        results = self.evaluator.evaluate(
            model, self.conditioning, self.train_scheduler, seen_tasks, self.classes_per_task, device, buffered
        )
        fault_point("task_eval")
        self.report.add(task_id, results)
        grids = {t: os.path.join(self.output_dir, f"task_{t}", "samples.png") for t in seen_tasks}
        self.report.write(self.report_dir, {t: p for t, p in grids.items() if os.path.isfile(p)})
        return results

    @property
    def report_dir(self) -> str:
        return os.path.join(self.output_dir, "report")

    def state_dict(self) -> list[dict]:
        return self.report.state_dict()

    def load_state_dict(self, history: list[dict]) -> None:
        self.report.history = list(history)  # the report's other settings (sampler, class order) stay
