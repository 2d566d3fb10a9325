"""Where runs and evaluations read and write: a run resumed from another run's checkpoint into a new --output_dir
gets the exports of the tasks finished before the checkpoint (or a one-line refusal when they are gone);
`--resume_from_checkpoint latest` with no checkpoint warns; a --resolution above the data's size warns naming both;
evaluate.py writes next to the model, not into it, and says where."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
from conftest import TINY_FLAGS, make_tasks

import evaluate
import main_ddpm
from continual_diffusers.data import save_tasks
from continual_diffusers.training.checkpoint import resolve_resume


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """Two tasks of 2 steps with a checkpoint after every step: checkpoint-3 is mid task 2 (task 1 finished)."""
    root = tmp_path_factory.mktemp("branch")
    data = root / "tasks.npz"
    save_tasks(str(data), make_tasks("class"))
    flags = [*TINY_FLAGS, "--data_path", data, "--max_train_steps", 2, "--checkpointing_steps", 1]
    assert main_ddpm.main([str(a) for a in [*flags, "--output_dir", root / "runA"]]) == 0
    return root, [str(a) for a in flags]


def test_resuming_another_runs_checkpoint_carries_its_finished_exports(run_a):
    root, flags = run_a
    checkpoint = root / "runA" / "checkpoint-3"
    assert json.loads((checkpoint / "training_state.json").read_text())["seen_tasks"] == [1]
    run_b = root / "runB"
    assert main_ddpm.main([*flags, "--output_dir", str(run_b), "--resume_from_checkpoint", str(checkpoint)]) == 0
    assert sorted(n for n in os.listdir(run_b) if n.startswith("task_")) == ["task_1", "task_2"]
    copied, source = run_b / "task_1" / "unet", root / "runA" / "task_1" / "unet"
    assert sorted(os.listdir(copied)) == sorted(os.listdir(source))
    for name in os.listdir(source):
        assert (copied / name).read_bytes() == (source / name).read_bytes()


def test_a_finished_export_missing_from_the_checkpoints_run_is_refused(run_a, capsys, tmp_path):
    root, flags = run_a
    bare = tmp_path / "runA"
    shutil.copytree(root / "runA" / "checkpoint-3", bare / "checkpoint-3")  # the checkpoint without its run
    run_c = tmp_path / "runC"
    capsys.readouterr()
    code = main_ddpm.main([*flags, "--output_dir", str(run_c), "--resume_from_checkpoint", str(bare / "checkpoint-3")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert f"task 1 ended before this checkpoint, but its export {bare / 'task_1'} is missing" in err[0]
    assert not run_c.exists()


def test_latest_without_a_checkpoint_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_resume(str(tmp_path), "latest") is None
    assert any(r.levelno == logging.WARNING and "no checkpoint in" in r.getMessage() for r in caplog.records)


def test_a_resolution_above_the_datas_size_warns_with_both_sizes(tmp_path, caplog):
    data = tmp_path / "tasks.npz"
    save_tasks(str(data), make_tasks("class"))
    argv = [*TINY_FLAGS, "--data_path", str(data), "--output_dir", str(tmp_path / "out"), "--dry_run"]
    with caplog.at_level(logging.WARNING):
        assert main_ddpm.main([*argv, "--resolution", "16"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "--resolution" in r.msg]
    assert len(warned) == 1 and "--resolution 16 upsamples the 8×8 images" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main_ddpm.main([*argv, "--resolution", "8"]) == 0
    assert not [r for r in caplog.records if "upsamples" in r.getMessage()]


def test_evaluate_writes_next_to_the_model_and_says_where(run_a, capsys):
    root, _ = run_a
    model = root / "runA" / "task_2"
    before = sorted(os.listdir(model))
    capsys.readouterr()
    argv = ["--model_path", str(model), "--num_inference_steps", "2", "--num_samples", "1", "--no_progress"]
    assert evaluate.main(argv) == 0
    out = root / "runA" / "eval" / "task_2"
    assert (out / "samples.png").is_file() and (out / "run.json").is_file()
    assert sorted(os.listdir(model)) == before  # nothing written into the model's folder
    assert f"to {out}" in capsys.readouterr().out
