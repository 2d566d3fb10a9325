"""The trainer's resumable state: where training stands (`Position`), its checkpoints (`save_checkpoint`), and
restoring one into a trainer (`restore`, each part first checked against this run by `resume.check_resume`).

Functions of the trainer (`save_checkpoint`, `restore` and `attach_evaluation` are its methods of those names): they
read and write its model, EMA, strategy, position and the bookkeeping a restored checkpoint leaves for later (the
optimizer state for the resumed task's optimizer, the evaluation history for `attach_evaluation`, the task it
stopped in).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data import Task, TaskSequence
from ..models.denoiser import denoiser_state_dict, load_denoiser_state_dict
from ..utils.errors import UserInputError
from ..utils.logging import get_logger
from . import checkpoint as ckpt
from .optim import build_lr_schedule, build_optimizer
from .resume import RunSpec, check_resume

logger = get_logger(__name__)


@dataclass
class Position:
    """Where training stands; saved as training_state.json."""

    task_index: int = 0  # tasks finished: the sequence index of the task being (or about to be) trained
    step_in_task: int = 0  # optimizer steps done in that task
    global_step: int = 0  # optimizer steps over all tasks
    seen_tasks: list[int] = field(default_factory=list)


def start(trainer) -> None:
    """A new trainer's state: position 0, nothing restored."""
    trainer.position = Position()
    trainer._pending: dict | None = None  # optimizer / schedule state waiting for the resumed task's optimizer
    trainer._pending_history: list | None = None  # a restored evaluation history waiting for `attach_evaluation`
    trainer._known_tasks: dict[int, Task] = {}  # task id → task, in sequence order (slot models' references)
    trainer._task_in_progress: int | None = None  # a restored mid-task checkpoint's task id


def save_checkpoint(trainer, optimizer, lr_schedule, task_done: bool) -> None:
    """checkpoint-<global step>/ (main process; every process waits for it): a finished task's checkpoint has no
    optimizer / LR schedule state, a new task starts fresh ones."""
    acc = trainer.accelerator
    if acc.is_main_process:
        pos = trainer.position
        state = {
            "task_index": pos.task_index + int(task_done),
            "step_in_task": 0 if task_done else pos.step_in_task,
            "global_step": pos.global_step,
            "seen_tasks": pos.seen_tasks,
            "strategy": trainer.strategy.name,
            "evaluation": trainer.task_eval.state_dict() if trainer.task_eval is not None else [],
        }
        scaler = acc.scaler.state_dict() if acc.scaler is not None else None
        parts = {
            "model_state": denoiser_state_dict(acc.unwrap_model(trainer.model)),
            "ema_state": trainer.ema.state_dict() if trainer.ema is not None else None,
            "optimizer_state": None if task_done else optimizer.state_dict(),
            "lr_scheduler_state": None if task_done else lr_schedule.state_dict(),
            "scaler_state": scaler,
            "strategy_state": trainer.strategy.state_dict(),
        }
        path = ckpt.save_checkpoint(trainer.cfg.output_dir, pos.global_step, parts, state)
        ckpt.prune_checkpoints(trainer.cfg.output_dir, trainer.cfg.checkpoints_total_limit, keep=path)
        logger.info("saved %s", path)
    acc.wait_for_everyone()


def restore(trainer, path: str, tasks: TaskSequence) -> None:
    """Load checkpoint `path` into the model, EMA, scaler, strategy and position. Every part is first checked
    against this run (`resume.check_resume`: `UserInputError` naming the file and the field), so call this
    before the run writes anything. The evaluation history waits for `attach_evaluation` when the end-of-task
    evaluation is not built yet."""
    parts = ckpt.load_checkpoint(path)
    check_resume(path, parts, run_spec(trainer, tasks, parts["training_state"]))
    state = parts["training_state"]
    load_denoiser_state_dict(trainer.model, parts["model_state"])
    try:
        if trainer.ema is not None:
            trainer.ema.load_state_dict(parts["ema_state"])
            trainer.ema.to(trainer.accelerator.device)
        if trainer.accelerator.scaler is not None and parts["scaler_state"] is not None:
            trainer.accelerator.scaler.load_state_dict(parts["scaler_state"])
        trainer.strategy.load_state_dict(parts["strategy_state"])
    except UserInputError:
        raise
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise UserInputError(f"{path}: the checkpoint does not load into this run ({err})".splitlines()[0]) from err
    trainer._pending_history = list(state.get("evaluation", []))
    if trainer.task_eval is not None:
        attach_evaluation(trainer, trainer.task_eval)
    trainer.position = Position(
        state["task_index"], state["step_in_task"], state["global_step"], list(state["seen_tasks"])
    )
    remember(trainer, tasks)
    mid_task = state["step_in_task"] > 0 and state["task_index"] < len(tasks)
    trainer._task_in_progress = tasks.task_ids[state["task_index"]] if mid_task else None
    trainer._pending = {k: parts[k] for k in ("optimizer_state", "lr_scheduler_state")}
    logger.info(
        "resumed from %s at task index %d, step %d", path, trainer.position.task_index, trainer.position.step_in_task
    )


def attach_evaluation(trainer, task_eval) -> None:
    """Set the end-of-task evaluation (built after `restore` when it trains an oracle, which writes) and give it
    the restored history."""
    trainer.task_eval = task_eval
    if task_eval is not None and trainer._pending_history is not None:
        task_eval.load_state_dict(trainer._pending_history)
    trainer._pending_history = None


def run_spec(trainer, tasks: TaskSequence, state) -> RunSpec:
    """What this run would write into a checkpoint, from fresh objects (the templates `check_resume` compares
    a checkpoint with)."""
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    # the most steps a task can take (with replayed rows inside the batches, their number depends on the buffer)
    steps = [trainer.steps_for_task(trainer.task_schedule(task, most_replay=True)) for task in tasks]
    index = state.get("task_index") if isinstance(state, dict) else None
    task_steps = steps[index] if isinstance(index, int) and 0 <= index < len(steps) else 1
    optimizer = build_optimizer(trainable, trainer.cfg)
    lr_schedule = build_lr_schedule(optimizer, trainer.cfg, task_steps)
    scaler = trainer.accelerator.scaler
    spec = trainer.spec
    return RunSpec(
        strategy=trainer.strategy.name,
        model_state=denoiser_state_dict(trainer.model),
        ema_state=None if trainer.ema is None else trainer.ema.state_dict(),
        optimizer_state=optimizer.state_dict(),
        lr_scheduler_state=lr_schedule.state_dict(),
        scaler_state=None if scaler is None else scaler.state_dict(),
        trainable_shapes=[tuple(p.shape) for p in trainable],
        task_ids=list(tasks.task_ids),
        steps_per_task=steps,
        image_shape=(spec.in_channels, spec.resolution),
        num_classes=spec.num_classes,
    )


def load_pending(trainer, optimizer, lr_schedule) -> None:
    """Load a restored mid-task checkpoint's optimizer and LR schedule state into the resumed task's, once."""
    if trainer._pending and trainer._pending["optimizer_state"] is not None:
        optimizer.load_state_dict(trainer._pending["optimizer_state"])
        lr_schedule.load_state_dict(trainer._pending["lr_scheduler_state"])
    trainer._pending = None


def remember(trainer, tasks) -> None:
    """Record the tasks by id, in sequence order (what slot models' end-of-task references are drawn from)."""
    for task in tasks:
        trainer._known_tasks.setdefault(task.task_id, task)


def check_next(trainer, task) -> None:
    """`UserInputError` unless `task` may be trained next: not trained yet, its id above the last trained one's,
    and the task a restored mid-task checkpoint stopped in."""
    seen = trainer.position.seen_tasks
    if task.task_id in seen:
        raise UserInputError(f"task {task.task_id} was trained already (tasks trained: {seen}); train each once")
    if seen and task.task_id < max(seen):
        raise UserInputError(
            f"task {task.task_id} comes after task {max(seen)} was trained: train tasks in increasing task id "
            f"order (tasks trained: {seen})"
        )
    if trainer._task_in_progress is not None and task.task_id != trainer._task_in_progress:
        raise UserInputError(
            f"the restored checkpoint stopped in the middle of task {trainer._task_in_progress}: train that task "
            f"before task {task.task_id}"
        )


def check_ema_pairing(trainer) -> None:
    """diffusers' EMAModel pairs its shadow copies with the model's parameters by position (zip): a strategy
    that added or removed parameters after the trainer was built would silently average the wrong tensors."""
    if trainer.ema is None:
        return
    shapes = [tuple(p.shape) for p in trainer.model.parameters()]
    if shapes != [tuple(p.shape) for p in trainer.ema.shadow_params]:
        raise RuntimeError(
            f"the model has {len(shapes)} parameter tensors but the EMA tracks {len(trainer.ema.shadow_params)} "
            "(or their shapes differ): a strategy changed the parameter set after the trainer was built; "
            "create such parameters before building the trainer (as LoRA does for every task's adapter)"
        )
