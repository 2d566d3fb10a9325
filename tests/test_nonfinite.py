"""Numerical and storage faults: a non-finite loss or gradient stops the run with one line naming step and task (or
the step is skipped with --on_nonfinite skip), the last good checkpoint is kept and no checkpoint of non-finite
weights is ever written; a full disk (simulated: the checkpoint writer raises ENOSPC, we cannot fill a real file
system here without root) ends with one line naming the last good checkpoint, leaves no temporary folder, and the
run resumes once the writes work again. Also the checkpoint bookkeeping the kill/resume harness relies on."""

from __future__ import annotations

import errno
import os

import pytest
import torch
from conftest import TINY_FLAGS
from safetensors.torch import load_file

import main_ddpm
from continual_diffusers.objectives import DenoisingObjective
from continual_diffusers.training import checkpoint as ckpt
from continual_diffusers.training.trainer import ContinualTrainer
from continual_diffusers.utils.errors import NonFiniteError, StorageError, UserInputError
from continual_diffusers.utils.files import check_writable

FAULT_AT = 3  # global optimizer step (1-based) that goes wrong: step 1 of task 2 with 2 steps per task


def run(argv) -> int:
    return main_ddpm.main([str(a) for a in argv])


def common(data, out) -> list:
    return ["--data_path", data, "--output_dir", out, "--max_train_steps", 2, "--checkpointing_steps", 1,
            "--use_ema", *TINY_FLAGS]  # fmt: skip


class _InfGrad(torch.autograd.Function):
    """Identity forward (so the loss stays finite), infinite gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


def inject(monkeypatch, kind: str, at: int = FAULT_AT):
    """Make the loss (kind="loss") or only the gradient (kind="grad") non-finite at global step `at`."""
    objective_loss, trainer_backward = DenoisingObjective.loss, ContinualTrainer._backward
    faulty = {"now": False}

    def _backward(self, model, batch):
        faulty["now"] = self.position.global_step + 1 == at
        try:
            return trainer_backward(self, model, batch)
        finally:
            faulty["now"] = False

    def loss(self, model, *args):
        out = objective_loss(self, model, *args)
        if faulty["now"]:
            if kind == "loss":
                out.loss = out.loss * float("nan")
            else:
                weight = next(p for p in model.parameters() if p.requires_grad)
                out.loss = out.loss + 0.0 * _InfGrad.apply(weight).sum()
        return out

    monkeypatch.setattr(ContinualTrainer, "_backward", _backward)
    monkeypatch.setattr(DenoisingObjective, "loss", loss)


def complete(out) -> list[str]:
    return [os.path.basename(p) for _, p in ckpt.list_checkpoints(str(out))]


@pytest.mark.parametrize("kind, what", [("loss", "non-finite loss (nan)"), ("grad", "non-finite gradient norm")])
def test_nonfinite_stops_with_step_and_task_and_keeps_last_good(tmp_path, task_file, monkeypatch, capsys, kind, what):
    out = tmp_path / "run"
    inject(monkeypatch, kind)
    assert run(common(task_file(), out)) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and what in err
    assert "at step 1 of task 2 (global step 3)" in err and "checkpoint-2" in err and "--on_nonfinite skip" in err
    assert complete(out) == ["checkpoint-1", "checkpoint-2"]  # nothing after the fault, nothing torn
    assert not list(out.glob("*.tmp")) and not (out / "task_2").exists()
    state = load_file(out / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in state.values())


def test_skip_leaves_weights_ema_and_optimizer_untouched(tmp_path, task_file, monkeypatch):
    out = tmp_path / "run"
    inject(monkeypatch, "loss")
    # One EMA over the sequence: with the default per-task scope the EMA's step count restarts at task 2's start,
    # which is exactly where the skipped step sits.
    assert run([*common(task_file(), out), "--on_nonfinite", "skip", "--ema_scope", "sequence"]) == 0
    assert complete(out) == [f"checkpoint-{s}" for s in (1, 2, 3, 4)]
    before, after = (out / "checkpoint-2", out / "checkpoint-3")  # the skipped step is global step 3
    a, b = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ema_a, ema_b = (torch.load(p / "ema.pt", weights_only=True) for p in (before, after))
    assert ema_a["optimization_step"] == ema_b["optimization_step"]
    assert all(torch.equal(x, y) for x, y in zip(ema_a["shadow_params"], ema_b["shadow_params"]))
    # ... and training went on afterwards: step 4 changed the weights, all of them finite.
    c = load_file(out / "checkpoint-4" / "model.safetensors")
    assert any(not torch.equal(b[k], c[k]) for k in b) and all(torch.isfinite(t).all() for t in c.values())


def _parts(value: float = 1.0) -> dict:
    return {
        "model_state": {"w": torch.full((2,), value)},
        "ema_state": {"shadow_params": [torch.ones(2)], "optimization_step": 1},
        "optimizer_state": {"state": {}, "param_groups": []},
        "lr_scheduler_state": {"last_epoch": 3},
        "scaler_state": None,
        "strategy_state": {},
    }


def test_checkpoint_of_nonfinite_weights_is_refused(tmp_path):
    out = str(tmp_path)
    ckpt.save_checkpoint(out, 1, _parts(), {"global_step": 1})
    for bad in (float("nan"), float("inf")):
        with pytest.raises(NonFiniteError, match=r"refusing to write checkpoint-2: weight 'w' is NaN or infinite; "
                           r"the last good checkpoint is .*checkpoint-1"):  # fmt: skip
            ckpt.save_checkpoint(out, 2, _parts(bad), {"global_step": 2})
    ema = _parts()
    ema["ema_state"]["shadow_params"][0][0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"weight 'ema\[0\]'"):
        ckpt.save_checkpoint(out, 2, ema, {"global_step": 2})
    assert sorted(os.listdir(out)) == ["checkpoint-1"]


def test_disk_full_is_one_line_and_the_run_resumes(tmp_path, task_file, monkeypatch, capsys):
    out, data = tmp_path / "run", task_file()
    real_save = ckpt.save_file
    calls = {"n": 0}

    def save_file(tensors, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # model.safetensors of the second checkpoint (each checkpoint writes 2 such files)
            with open(path, "wb") as fh:  # a partial file first, as a real full disk leaves
                fh.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", save_file)
    assert run(common(data, out)) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: cannot write ") and "checkpoint-2: No space left on device" in err
    assert "the last good checkpoint is" in err and err.endswith("checkpoint-1 (--resume_from_checkpoint latest)")
    assert complete(out) == ["checkpoint-1"] and not list(out.glob("*.tmp"))
    monkeypatch.setattr(ckpt, "save_file", real_save)  # space freed
    assert run([*common(data, out), "--resume_from_checkpoint", "latest"]) == 0
    assert complete(out) == [f"checkpoint-{s}" for s in (1, 2, 3, 4)] and (out / "task_2").is_dir()


def test_write_atomically_cleans_up_on_enospc(tmp_path):
    def write(tmp):
        with open(os.path.join(tmp, "a"), "wb") as fh:
            fh.write(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match="cannot write .*task_1: No space left on device"):
        ckpt.write_atomically(str(tmp_path / "task_1"), write)
    assert os.listdir(tmp_path) == []


def test_check_writable(tmp_path):
    check_writable(str(tmp_path / "new" / "dir"))
    assert os.listdir(tmp_path / "new" / "dir") == []  # the probe is removed
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="is not writable: Not a directory"):
        check_writable(str(tmp_path / "file" / "out"))


def test_torn_and_half_deleted_checkpoints_are_never_latest(tmp_path):
    out = str(tmp_path)
    for step in (1, 2):
        ckpt.save_checkpoint(out, step, _parts(), {"global_step": step})
    os.makedirs(tmp_path / "checkpoint-9.tmp")  # a write killed before its rename
    os.makedirs(tmp_path / "checkpoint-7")  # a folder without model weights, e.g. copied by hand
    (tmp_path / "checkpoint-7" / ckpt.STATE_FILE).write_text("{}")
    os.replace(tmp_path / "checkpoint-1", tmp_path / "checkpoint-1.trash")  # a prune killed mid-deletion
    assert ckpt.resolve_resume(out, "latest").endswith("checkpoint-2")
    ckpt.save_checkpoint(out, 3, _parts(), {"global_step": 3})
    ckpt.prune_checkpoints(out, 1, keep=os.path.join(out, "checkpoint-3"))
    assert sorted(os.listdir(out)) == ["checkpoint-3", "checkpoint-7", "checkpoint-9.tmp"]


def test_prune_never_deletes_the_checkpoint_just_written(tmp_path):
    """After resuming from an older checkpoint, the one just written is not the newest by step: it stays."""
    out = str(tmp_path)
    for step in (2, 6):
        ckpt.save_checkpoint(out, step, _parts(), {"global_step": step})
    just_written = ckpt.save_checkpoint(out, 3, _parts(), {"global_step": 3})
    ckpt.prune_checkpoints(out, 1, keep=just_written)
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [3, 6]
    ckpt.prune_checkpoints(out, 1)  # without `keep` the newest one survives
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [6]


def test_unreadable_checkpoint_is_a_user_error(tmp_path):
    path = ckpt.save_checkpoint(str(tmp_path), 1, _parts(), {"global_step": 1})
    with open(os.path.join(path, "model.safetensors"), "r+b") as fh:
        fh.write(b"garbage!")
    with pytest.raises(UserInputError, match="not a readable checkpoint"):
        ckpt.load_checkpoint(path)
