"""Resumable checkpoints, written atomically and without pickled code (the per-task exports, written with the same
`write_atomically`, are in `export.py`).

Layout:
    output_dir/checkpoint-{global_step}/      resumable state (training_state.json is written last = complete)
        model.safetensors  ema.pt  optimizer.pt  lr_scheduler.pt  [scaler.pt]
        strategy.safetensors  strategy.json  training_state.json

Every directory is first written as `<name>.tmp`, its files and the folder fsync'ed, then renamed (and the parent
fsync'ed), so a crash never leaves a half-written directory under its final name; `latest` only considers
directories whose `training_state.json` and `model.safetensors` exist. Pruning renames a checkpoint to
`<name>.trash` before deleting it, so a half-deleted checkpoint is never taken for a complete one, and never removes
the checkpoint just written. A checkpoint whose weights are not finite is refused (`NonFiniteError`); a failed
write (disk full, read-only) removes its temporary folder and raises `StorageError` naming the last good checkpoint.
`.pt` files hold only tensors and numbers and are read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..utils.errors import NonFiniteError, StorageError, UserInputError
from ..utils.faults import fault_point
from ..utils.files import NotRegularFileError, open_regular_file
from ..utils.jsonfile import read_json
from ..utils.logging import get_logger

logger = get_logger(__name__)
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"
MODEL_FILE = "model.safetensors"


def _fsync_tree(path: str) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(root)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(final_dir: str, write_fn: Callable[[str], None]) -> str:
    """Run `write_fn(tmp_dir)`, fsync it, then rename tmp_dir → final_dir (replacing an older one).

    Raises `StorageError` (after removing tmp_dir) when the file system refuses a write."""
    tmp = final_dir.rstrip("/") + ".tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        write_fn(tmp)
        _fsync_tree(tmp)
        fault_point("checkpoint_rename")
        if os.path.exists(final_dir):  # same content (training is deterministic): a re-run after a crash
            shutil.rmtree(final_dir)
        os.replace(tmp, final_dir)
        _fsync_dir(os.path.dirname(os.path.abspath(final_dir)))
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StorageError(f"cannot write {final_dir}: {err.strerror or err}") from err
    return final_dir


def last_good(output_dir: str) -> str:
    """Where to resume from, for error messages."""
    found = list_checkpoints(output_dir)
    if not found:
        return "there is no complete checkpoint yet"
    return f"the last good checkpoint is {found[-1][1]} (--resume_from_checkpoint latest)"


def _check_finite(parts: dict) -> str | None:
    """Name of the first non-finite weight of the model or its EMA, or None."""
    named = list(parts["model_state"].items())
    if parts.get("ema_state") is not None:
        named += [(f"ema[{i}]", t) for i, t in enumerate(parts["ema_state"].get("shadow_params", []))]
    for name, tensor in named:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def split_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a flat strategy state into tensors (→ safetensors) and JSON-able values."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
    rest = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    return tensors, rest


def save_checkpoint(output_dir: str, global_step: int, parts: dict, training_state: dict) -> str:
    """Write checkpoint-{global_step}. `parts`: model_state, ema_state|None, optimizer_state, lr_scheduler_state,
    scaler_state|None, strategy_state. Refuses non-finite weights (`NonFiniteError`): nothing is written."""
    name = f"checkpoint-{global_step}"
    bad = _check_finite(parts)
    if bad is not None:
        raise NonFiniteError(f"refusing to write {name}: weight {bad!r} is NaN or infinite; {last_good(output_dir)}")

    def write(tmp: str) -> None:
        save_file({k: v.contiguous() for k, v in parts["model_state"].items()}, os.path.join(tmp, MODEL_FILE))
        fault_point("checkpoint_files")
        for key in ("ema_state", "optimizer_state", "lr_scheduler_state", "scaler_state"):
            if parts.get(key) is not None:
                torch.save(parts[key], os.path.join(tmp, key.replace("_state", "") + ".pt"))
        tensors, rest = split_state(parts["strategy_state"])
        save_file(tensors, os.path.join(tmp, "strategy.safetensors"))
        _write_json(os.path.join(tmp, "strategy.json"), rest)
        fault_point("checkpoint_files")
        _write_json(os.path.join(tmp, STATE_FILE), training_state)  # last: marks the checkpoint complete

    try:
        return write_atomically(os.path.join(output_dir, name), write)
    except StorageError as err:
        raise StorageError(f"{err}; {last_good(output_dir)}") from err.__cause__


def _check_regular(*files: str) -> None:
    """safetensors opens a file by its path, which blocks on a FIFO: refuse non-regular files first (a missing one
    is left to the reader's own message)."""
    for file in files:
        try:
            open_regular_file(file).close()
        except FileNotFoundError:
            continue
        except NotRegularFileError as err:
            raise UserInputError(f"{file}: {err}") from None


def _load_pt(file: str):
    """A `.pt` of tensors and numbers; anything else (a pickled object) is refused in one line, never with torch's
    advice to retry with weights_only=False. A FIFO or device is refused without blocking (`open_regular_file`)."""
    try:
        regular = open_regular_file(file)
    except NotRegularFileError as err:
        raise UserInputError(f"{file}: {err}") from None
    try:
        with regular as fh, warnings.catch_warnings():  # torch warns about pickles it then refuses
            warnings.simplefilter("ignore")
            return torch.load(fh, weights_only=True)
    except pickle.UnpicklingError:
        raise UserInputError(
            f"{file} holds pickled objects, not just tensors and numbers: refusing to load it (a checkpoint written "
            "by this library never does; resume from another checkpoint)"
        ) from None


def load_checkpoint(path: str) -> dict:
    """Read what `save_checkpoint` wrote (tensors on CPU). A missing or unreadable file is a `UserInputError`;
    whether the contents fit a run is `check_resume`'s business."""
    try:
        _check_regular(os.path.join(path, MODEL_FILE), os.path.join(path, "strategy.safetensors"))
        parts = {"model_state": load_file(os.path.join(path, MODEL_FILE))}
        for name in ("ema", "optimizer", "lr_scheduler", "scaler"):
            file = os.path.join(path, name + ".pt")
            parts[name + "_state"] = _load_pt(file) if os.path.exists(file) else None
        parts["strategy_state"] = _strategy_state(path)
        parts["training_state"] = _read_json(os.path.join(path, STATE_FILE))
    except UserInputError:
        raise
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # missing file, bad JSON or tensors
        raise _unreadable(path, err) from err
    return parts


def _strategy_state(path: str) -> dict:
    strategy = dict(load_file(os.path.join(path, "strategy.safetensors")))
    extra = _read_json(os.path.join(path, "strategy.json"))
    if not isinstance(extra, dict):
        raise ValueError("strategy.json is not a JSON object")
    strategy.update(extra)
    return strategy


def _unreadable(path: str, err: Exception) -> UserInputError:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return UserInputError(f"{path}: not a readable checkpoint ({first})")


def read_strategy_state(path: str) -> tuple[dict, dict]:
    """(strategy state, training_state.json) of checkpoint `path`, nothing else read (safetensors and JSON only:
    e.g. the replay buffer of a finished run, `strategies.replay.replayed_images_in_checkpoint`)."""
    try:
        return _strategy_state(path), _read_json(os.path.join(path, STATE_FILE))
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise _unreadable(path, err) from err


def checkpoint_of_task(output_dir: str, seen_before: list[int]) -> str | None:
    """The newest complete checkpoint of `output_dir` taken while the seen tasks were `seen_before` (during the
    next task, or at the end of the last of them): its strategy state is what that next task trained with. None
    when no such checkpoint is left."""
    for _, path in reversed(list_checkpoints(output_dir)):
        try:
            state = _read_json(os.path.join(path, STATE_FILE))
        except (OSError, ValueError):
            continue  # unreadable: not the one to take
        if isinstance(state, dict) and state.get("seen_tasks") == list(seen_before):
            return path
    return None


def _check_shapes(path: str, shapes: dict[str, tuple], model_state: dict[str, torch.Tensor]) -> None:
    want = {k: tuple(v.shape) for k, v in model_state.items()}
    missing, extra = sorted(set(want) - set(shapes)), sorted(set(shapes) - set(want))
    if missing or extra:
        raise UserInputError(
            f"{path} holds a different architecture: {len(missing)} weights missing (e.g. {missing[:1]}), "
            f"{len(extra)} unexpected (e.g. {extra[:1]}); resume with the model flags the run was started with"
        )
    differ = [k for k in want if want[k] != shapes[k]]
    if differ:
        k = differ[0]
        raise UserInputError(
            f"{path} holds a different architecture: {k} has shape {list(shapes[k])} but this model needs "
            f"{list(want[k])}; resume with the model flags the run was started with"
        )


def check_compatible(path: str, model_state: dict[str, torch.Tensor], strategy_name: str) -> None:
    """Refuse (`UserInputError`) to resume a run from a checkpoint of another architecture or strategy, before the
    run writes anything. Reads the safetensors header and the JSON state only."""
    from safetensors import safe_open

    try:
        _check_regular(os.path.join(path, MODEL_FILE))
        with safe_open(os.path.join(path, MODEL_FILE), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
        state = _read_json(os.path.join(path, STATE_FILE))
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise _unreadable(path, err) from err
    _check_shapes(path, shapes, model_state)
    strategy = state.get("strategy") if isinstance(state, dict) else None
    if strategy not in (None, strategy_name):
        raise UserInputError(
            f"{path} was written by strategy {strategy!r}, this run uses {strategy_name!r}; "
            "resume with the strategy flags the run was started with"
        )


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints as (global_step, path), oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_RE.match(name)
        path = os.path.join(output_dir, name)
        if match and all(os.path.isfile(os.path.join(path, f)) for f in (STATE_FILE, MODEL_FILE)):
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_resume(output_dir: str, resume: str | None) -> str | None:
    """`latest` → newest complete checkpoint (or None: start fresh); a path must be a complete checkpoint."""
    if resume is None:
        return None
    if not resume.strip():  # e.g. an unset shell variable: starting over silently would be wrong
        raise UserInputError("--resume_from_checkpoint is empty: pass 'latest' or a checkpoint-N folder")
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            logger.warning("--resume_from_checkpoint latest: no checkpoint in %s, starting from scratch", output_dir)
        return found[-1][1] if found else None
    if not os.path.lexists(os.path.join(resume, STATE_FILE)):  # a FIFO in its place is refused when it is read
        raise UserInputError(f"--resume_from_checkpoint {resume}: not a complete checkpoint (no {STATE_FILE})")
    return resume


def prune_checkpoints(output_dir: str, total_limit: int | None, keep: str | None = None) -> None:
    """Keep the newest `total_limit` complete checkpoints; never removes the newest one nor `keep` (the one just
    written, which is not the newest by step after resuming from an older checkpoint). A checkpoint is renamed to
    `<name>.trash` before it is deleted, so a crash mid-deletion never leaves a torn checkpoint under its name."""
    if not total_limit:
        return
    found = list_checkpoints(output_dir)
    keep_path = None if keep is None else os.path.abspath(keep)
    doomed = [p for _, p in found[: max(0, len(found) - max(total_limit, 1))] if os.path.abspath(p) != keep_path]
    for path in doomed:
        logger.info("removing old checkpoint %s (--checkpoints_total_limit %d)", path, total_limit)
        trash = path + ".trash"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(path, trash)
        fault_point("checkpoint_prune")
        shutil.rmtree(trash, ignore_errors=True)
    for name in os.listdir(output_dir):  # leftovers of a deletion interrupted earlier
        if name.startswith("checkpoint-") and name.endswith(".trash"):
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def _write_json(path: str, data: dict) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)


def _read_json(path: str):
    return read_json(path)  # a regular file of bounded size and nesting, or a one-line UserInputError
