"""Checking a checkpoint against the run that resumes from it, before the run writes anything.

A checkpoint folder is input like any other: its files can be edited, copied from another run or truncated. Every
part is compared with what this run would write itself (the fresh model, EMA, optimizer and LR schedule are the
templates: same keys, lengths, tensor shapes and dtypes, finite numbers), and the training position with the task
file and the flags. A part that does not fit is refused with one line naming the file and the field, instead of a
traceback mid-run, a run that silently trains nothing (`task_index` past the last task) or NaN weights.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from ..utils import bounds as b
from ..utils.errors import UserInputError
from .checkpoint import MODEL_FILE, STATE_FILE, _check_shapes

# EMA settings a checkpoint carries (diffusers' EMAModel.state_dict), and their bounds.
METRIC_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # accuracy, frechet, class_kl, ...
TASK_KEY = re.compile(r"[0-9]{1,10}")  # a task id, or "0": one number per evaluation
EMA_SCALARS = {
    "decay": b.UNIT,
    "min_decay": b.UNIT,
    "optimization_step": b.STEPS_OR_ZERO,
    "update_after_step": b.STEPS_OR_ZERO,
    "inv_gamma": b.POSITIVE,
    "power": b.POSITIVE,
}


@dataclass
class RunSpec:
    """What this run would write into a checkpoint; the templates come from its freshly built objects."""

    strategy: str
    model_state: dict[str, torch.Tensor]
    ema_state: dict | None  # None: the run has no EMA
    optimizer_state: dict  # a fresh optimizer over the trainable parameters, with its LR schedule attached
    lr_scheduler_state: dict
    scaler_state: dict | None  # None: no fp16 loss scaling
    trainable_shapes: list[tuple[int, ...]]  # the optimizer's parameters, in its order
    task_ids: list[int]
    steps_per_task: list[int]  # optimizer steps of each task with this run's flags
    image_shape: tuple[int, int]  # (channels, resolution) of the images a replay buffer holds
    num_classes: int  # 0: no class labels


def refuse(file: str, what: str) -> UserInputError:
    return UserInputError(f"{file}: {what}; resume from an unedited checkpoint of this run")


def check_resume(path: str, parts: dict, spec: RunSpec) -> None:
    """`UserInputError` unless every part of the checkpoint loaded from `path` (`checkpoint.load_checkpoint`)
    fits the run described by `spec`."""
    state = parts["training_state"]
    check_training_state(os.path.join(path, STATE_FILE), state, spec)
    check_tensors(os.path.join(path, MODEL_FILE), parts["model_state"], spec.model_state, path)
    check_ema(os.path.join(path, "ema.pt"), parts["ema_state"], spec.ema_state)
    if parts["optimizer_state"] is not None or parts["lr_scheduler_state"] is not None:
        task_steps = spec.steps_per_task[state["task_index"]] if state["task_index"] < len(spec.task_ids) else 0
        check_optimizer(os.path.join(path, "optimizer.pt"), parts["optimizer_state"], spec)
        check_lr_schedule(os.path.join(path, "lr_scheduler.pt"), parts["lr_scheduler_state"], spec, task_steps)
    if spec.scaler_state is not None and parts["scaler_state"] is not None:
        file = os.path.join(path, "scaler.pt")
        _expect_like(file, parts["scaler_state"], spec.scaler_state, "state")
        b.POSITIVE.check(f"{file}: scale", parts["scaler_state"].get("scale"))
    check_strategy_state(path, parts["strategy_state"], spec)


# ------------------------------------------------------------------------------------------------ the parts
def check_training_state(file: str, state, spec: RunSpec) -> None:
    """The position (task_index, step_in_task, global_step, seen_tasks) must lie inside this run's task sequence."""
    if not isinstance(state, dict):
        raise refuse(file, f"holds a JSON {type(state).__name__}, not an object")
    for key in ("task_index", "step_in_task", "global_step"):
        if not b.STEPS_OR_ZERO.contains(state.get(key)):
            raise refuse(file, f"{key} must be an integer >= 0, got {state.get(key)!r}")
    index, step, num_tasks = state["task_index"], state["step_in_task"], len(spec.task_ids)
    if index > num_tasks:
        raise refuse(file, f"task_index is {index} but the task file has {num_tasks} tasks")
    seen = state.get("seen_tasks")
    if seen != spec.task_ids[:index]:
        raise refuse(file, f"seen_tasks {seen!r} do not match task_index {index} of the tasks {spec.task_ids}")
    limit = spec.steps_per_task[index] if index < num_tasks else 0
    if step > 0 and step >= limit:
        where = f"task {spec.task_ids[index]} has {limit} optimizer steps with these flags" if limit else "all done"
        raise refuse(file, f"step_in_task is {step} but {where}")
    if state["global_step"] < step:
        raise refuse(file, f"global_step {state['global_step']} is below step_in_task {step}")
    if state.get("strategy") not in (None, spec.strategy):
        raise refuse(file, f"strategy is {state.get('strategy')!r}, this run uses {spec.strategy!r}")
    _check_history(file, state.get("evaluation", []))


def _check_history(file: str, history) -> None:
    """The end-of-task evaluation history: [{"after_task": k, "metrics": {metric: {task: value}}}]. Metric names
    are identifiers and task keys digits: both end up in file names and report.md."""
    ok = isinstance(history, list) and all(
        isinstance(h, dict)
        and b.TASK_ID.contains(h.get("after_task"))
        and isinstance(h.get("metrics"), dict)
        and all(
            isinstance(name, str)
            and METRIC_NAME.fullmatch(name)
            and isinstance(values, dict)
            and all(TASK_KEY.fullmatch(t) and isinstance(v, (int, float)) for t, v in values.items())
            for name, values in h["metrics"].items()
        )
        for h in history
    )
    if not ok:
        raise refuse(file, 'evaluation must be a list of {"after_task": k, "metrics": {metric: {task: number}}}')


def check_tensors(file: str, state: dict, template: dict[str, torch.Tensor], path: str) -> None:
    """Model weights: the same names, shapes and dtypes as this model's, and finite."""
    _check_shapes(path, {k: tuple(v.shape) for k, v in state.items()}, template)
    for key, tensor in state.items():
        if tensor.dtype != template[key].dtype:
            raise refuse(file, f"{key} is {tensor.dtype}, this model has {template[key].dtype}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise refuse(file, f"{key} holds NaN or infinite values")


def check_ema(file: str, state, template: dict | None) -> None:
    if (state is None) != (template is None):
        have = "has no EMA weights" if state is None else "holds EMA weights"
        raise UserInputError(
            f"{file}: the checkpoint {have} but this run {'uses' if template is not None else 'has no'} --use_ema; "
            "resume with the flags the run was started with"
        )
    if state is None:
        return
    _expect_like(file, state, template, "state")
    for key, bounds in EMA_SCALARS.items():
        bounds.check(f"{file}: {key}", state[key])


def check_optimizer(file: str, state, spec: RunSpec) -> None:
    """A torch optimizer state: param_groups like a fresh optimizer's, per-parameter tensors shaped like the
    parameters they belong to, every number finite."""
    if not isinstance(state, dict) or set(state) != {"state", "param_groups"}:
        raise refuse(file, "is not an optimizer state (keys 'state' and 'param_groups')")
    _expect_like(file, state["param_groups"], spec.optimizer_state["param_groups"], "param_groups")
    if not isinstance(state["state"], dict):
        raise refuse(file, "'state' is not a dict")
    for index, entry in state["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(spec.trainable_shapes) or not isinstance(entry, dict):
            raise refuse(file, f"state[{index!r}] names no parameter of this model")
        for name, value in entry.items():
            where = f"state[{index}][{name!r}]"
            if not isinstance(value, (torch.Tensor, int, float)) or isinstance(value, bool):
                raise refuse(file, f"{where} is a {type(value).__name__}")
            tensor = torch.as_tensor(value)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise refuse(file, f"{where} holds NaN or infinite values")
            if tensor.dim() > 0 and not spec_is_8bit(spec) and tuple(tensor.shape) != spec.trainable_shapes[index]:
                raise refuse(
                    file, f"{where} has shape {list(tensor.shape)}, the parameter {list(spec.trainable_shapes[index])}"
                )


def spec_is_8bit(spec: RunSpec) -> bool:
    """bitsandbytes' 8-bit AdamW keeps quantisation maps of other shapes next to its moments."""
    return "optim_bits" in spec.optimizer_state["param_groups"][0]


def check_lr_schedule(file: str, state, spec: RunSpec, task_steps: int) -> None:
    _expect_like(file, state, spec.lr_scheduler_state, "state")
    if "last_epoch" in state and not 0 <= state["last_epoch"] <= task_steps:
        raise refuse(file, f"last_epoch is {state['last_epoch']} but the task has {task_steps} optimizer steps")


def check_strategy_state(path: str, state: dict, spec: RunSpec) -> None:
    """Tensors that copy a model parameter (EWC Fisher/anchors, SI, the teacher) must have its shape; every float
    tensor must be finite; a replay buffer must hold images this run can replay."""
    files = f"{path}/strategy.safetensors"
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise refuse(files, f"{key} holds NaN or infinite values")
        param = _parameter_suffix(key, spec.model_state)
        if param is not None and tuple(value.shape) != tuple(spec.model_state[param].shape):
            raise refuse(
                files, f"{key} has shape {list(value.shape)} but the parameter {param} has "
                f"{list(spec.model_state[param].shape)}"
            )  # fmt: skip
    for key in state:
        if key.endswith("buffer.images"):
            _check_buffer(files, state, key[: -len("images")], spec)


def _parameter_suffix(key: str, model_state: dict) -> str | None:
    """The model parameter a strategy tensor copies ("ewc/fisher.1.conv_in.weight" → "conv_in.weight"), if any."""
    parts = key.split(".")
    for start in range(len(parts)):
        name = ".".join(parts[start:])
        if name in model_state:
            return name
    return None


def _check_buffer(file: str, state: dict, prefix: str, spec: RunSpec) -> None:
    images, task_ids = state[prefix + "images"], state.get(prefix + "task_ids")
    channels, resolution = spec.image_shape
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != channels:
        raise refuse(
            file, f"{prefix}images must be uint8 (N, {channels}, H, W), got {images.dtype} {list(images.shape)}"
        )
    if min(images.shape[2:]) != resolution:
        raise refuse(
            file, f"{prefix}images are {list(images.shape[2:])} pixels, this run's resolution is {resolution}"
        )
    if not isinstance(task_ids, torch.Tensor) or task_ids.shape != (len(images),):
        raise refuse(file, f"{prefix}task_ids must hold one task id per buffered image")
    unknown = sorted(set(task_ids.tolist()) - set(spec.task_ids))
    if unknown:
        raise refuse(file, f"{prefix}task_ids {unknown[:3]} are not tasks of the task file")
    labels = state.get(prefix + "labels", state.get(prefix + "captions"))
    if labels is not None and len(labels) != len(images):
        raise refuse(file, f"{prefix}labels has {len(labels)} entries for {len(images)} images")
    if (
        isinstance(labels, torch.Tensor)
        and len(labels)
        and not 0 <= int(labels.min()) <= int(labels.max()) < max(spec.num_classes, 1)
    ):
        raise refuse(file, f"{prefix}labels must be class ids in [0, {spec.num_classes})")
    if not b.STEPS_OR_ZERO.contains(state.get(prefix + "num_seen")) or state[prefix + "num_seen"] < len(images):
        raise refuse(file, f"{prefix}num_seen must be an integer >= the number of buffered images")


# ----------------------------------------------------------------------------------------------- structure
def _expect_like(file: str, value, template, where: str) -> None:
    problem = mismatch(value, template, where)
    if problem is not None:
        raise refuse(file, problem)


def mismatch(value, template, where: str) -> str | None:
    """Where `value` differs from `template` in structure (dict keys, sequence lengths, tensor shapes and dtypes,
    scalar types) or holds a non-finite number; None when it fits."""
    if isinstance(template, dict):
        if not isinstance(value, dict):
            return f"{where} is a {type(value).__name__}, expected a dict"
        if set(value) != set(template):
            missing, extra = sorted(set(template) - set(value), key=str), sorted(set(value) - set(template), key=str)
            return f"{where} has keys missing {missing[:3]} / unexpected {extra[:3]}"
        return next((m for k in template if (m := mismatch(value[k], template[k], f"{where}[{k!r}]"))), None)
    if isinstance(template, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(template):
            return f"{where} must be a sequence of {len(template)}"
        return next((m for i, t in enumerate(template) if (m := mismatch(value[i], t, f"{where}[{i}]"))), None)
    if isinstance(template, torch.Tensor):
        if not isinstance(value, torch.Tensor) or value.shape != template.shape or value.dtype != template.dtype:
            got = f"{value.dtype} {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            return f"{where} must be a {template.dtype} tensor of shape {list(template.shape)}, got {got}"
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"{where} holds NaN or infinite values"
        return None
    return _scalar_mismatch(value, template, where)


def _scalar_mismatch(value, template, where: str) -> str | None:
    if template is None or isinstance(template, (bool, str)):
        kinds = (type(None), bool, int, float, str) if template is None else (type(template),)
        return None if isinstance(value, kinds) else f"{where} must be a {type(template).__name__}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{where} must be a number, got {value!r}"
    if isinstance(template, int) and not isinstance(value, int):
        return f"{where} must be an integer, got {value!r}"
    return None if b.FINITE.contains(value) else f"{where} must be finite, got {value!r}"
