"""`report` evaluates a run on the data its config.json recorded, and refuses in one line, before writing anything
(no oracle in run_dir/oracle), when that data is unknown, gone or does not fit the run."""

from __future__ import annotations

import json
import os

import pytest
from conftest import TINY_FLAGS, make_tasks

import main_ddpm
from continual_diffusers.data import save_tasks
from continual_diffusers.evaluation.__main__ import main as eval_main

REPORT_FLAGS = ["--eval_num_samples", "4", "--num_inference_steps", "2"]


@pytest.fixture
def own_run(tmp_path, capsys):
    """A 1-step run on 3-channel 8×8 images of its own (not the 1-channel bundled digits), recorded in config.json
    with or without a test file."""

    def train(with_test: bool):
        train_file, test_file = str(tmp_path / "own.npz"), str(tmp_path / "own_test.npz")
        save_tasks(train_file, make_tasks(per_task=16))
        save_tasks(test_file, make_tasks(per_task=8))
        out = tmp_path / ("with_test" if with_test else "no_test")
        argv = ["--data_path", train_file, "--output_dir", str(out), "--max_train_steps", "1", *TINY_FLAGS]
        argv += ["--test_data_path", test_file] if with_test else []
        assert main_ddpm.main(argv) == 0
        capsys.readouterr()  # the training's progress bars: the report's messages are what is checked
        return out, train_file, test_file

    return train


def test_report_reads_the_runs_data_paths_from_its_config(own_run):
    out, _, _ = own_run(with_test=True)
    assert eval_main(["report", "--run_dir", str(out), *REPORT_FLAGS]) == 0
    oracle = json.loads((out / "oracle" / "config.json").read_text())
    assert oracle["in_channels"] == 3  # trained on the run's images, not the 1-channel digits
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["tasks"] == [1, 2] and metrics["sample_sizes"]["text"].endswith("M = 8 real images per task")


def assert_refused(capsys, argv, message, out):
    assert eval_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (out / "oracle").exists() and not (out / "report").exists()


def test_report_without_test_images_is_refused_before_writing_and_a_rerun_works(own_run, capsys):
    out, _, test_file = own_run(with_test=False)
    assert_refused(capsys, ["report", "--run_dir", str(out), *REPORT_FLAGS], "pass --test_data_path", out)
    # the corrected rerun is not blocked by anything the refusal left
    argv = ["report", "--run_dir", str(out), "--test_data_path", test_file, *REPORT_FLAGS]
    assert eval_main(argv) == 0 and (out / "report" / "report.md").is_file()


def test_report_refuses_missing_or_mismatched_data(own_run, tmp_path, capsys):
    out, train_file, test_file = own_run(with_test=True)
    moved = str(tmp_path / "moved.npz")
    os.rename(train_file, moved)
    assert_refused(capsys, ["report", "--run_dir", str(out), *REPORT_FLAGS], "records --data_path", out)
    digits = str(tmp_path / "gray.npz")  # 1-channel images: not the run's data
    save_tasks(digits, make_tasks(per_task=8, channels=1))
    argv = ["report", "--run_dir", str(out), "--data_path", digits, "--test_data_path", digits, *REPORT_FLAGS]
    assert_refused(capsys, argv, "the run's images have 3 channel(s)", out)
    os.remove(out / "config.json")
    assert_refused(capsys, ["report", "--run_dir", str(out), *REPORT_FLAGS], "config.json: not found", out)


def test_report_on_a_tiny_test_split_leaves_out_fid_and_kid_and_says_why(own_run, tmp_path):
    """One test image per task (a 12-image folder split with --test_fraction 0.2 gives as few): FID and KID need 2
    per set, so they are left out with N and M stated, and accuracy is still reported."""
    from continual_diffusers.data import Task, TaskSequence

    out, train_file, _ = own_run(with_test=False)
    tiny = str(tmp_path / "tiny_test.npz")
    save_tasks(tiny, TaskSequence(tuple(Task(t.task_id, t.images[:1], t.labels[:1]) for t in make_tasks())))
    argv = ["report", "--run_dir", str(out), "--data_path", train_file, "--test_data_path", tiny, *REPORT_FLAGS]
    assert eval_main(argv) == 0
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert "accuracy" in metrics["summary"] and "frechet" not in metrics["matrices"]
    assert set(metrics["left_out"]) >= {"frechet", "kid", "kid_sd"}
    assert "task 1 has M = 1" in metrics["left_out"]["frechet"]
    md = (out / "report" / "report.md").read_text()
    assert "**Left out**" in md and "oracle-feature FID: needs at least 2 generated and 2 real images" in md
