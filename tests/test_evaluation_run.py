"""End-of-task evaluation through main_ddpm: oracle, report files, resume keeps the evaluation history."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import TINY_FLAGS

import main_ddpm


def run(argv) -> int:
    return main_ddpm.main([str(a) for a in argv])


def test_report_is_written_and_survives_resume(tmp_path, task_file):
    data = task_file(per_task=16)
    common = [
        "--data_path",
        data,
        "--test_data_path",
        data,
        "--max_train_steps",
        2,
        "--eval_every_task",
        "--eval_num_samples",
        4,
        "--checkpointing_steps",
        1,
        "--buffer_type",
        "reservoir",
        "--buffer_size",
        4,
        *TINY_FLAGS,
    ]
    out = tmp_path / "run"
    assert run([*common, "--output_dir", out]) == 0
    report = out / "report"
    for name in (
        "report.md",
        "metrics.json",
        "metrics.csv",
        "heatmap_accuracy.png",
        "heatmap_frechet.png",
        "curves.png",
        "samples_sheet.png",
    ):
        assert (report / name).is_file(), name
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["tasks"] == [1, 2] and [len(r) for r in metrics["matrices"]["accuracy"]] == [1, 2]
    assert set(metrics["summary"]["accuracy"]) == {
        "average_final",
        "average_incremental",
        "forgetting",
        "backward_transfer",
    }
    # Memorisation and diversity per task, against the training images (here also the test images, so the distance
    # ratio to held-out images is undefined and left out).
    assert {"copy_fraction", "precision", "recall"} <= set(metrics["matrices"])
    assert "train_distance_ratio" not in metrics["matrices"] and (report / "heatmap_copy_fraction.png").is_file()
    assert metrics["higher_is_better"]["copy_fraction"] is False
    # The sample sizes behind FID / KID and the sampler, stated in every report file; buffer attraction after task 2
    # (task 1's 4 buffered images among its 16 training images).
    assert metrics["matrices"]["num_generated"] == [[4.0], [4.0, 4.0]] and "kid_sd" in metrics["matrices"]
    assert metrics["curves"]["buffer_share"] == [0.25] and len(metrics["curves"]["buffer_attraction"]) == 1
    md = (report / "report.md").read_text()
    assert (
        "N = 4 generated vs M = 16 real images per task" in md
        and "Every metric is measured on samples drawn with: " in md
    )
    assert (out / "oracle" / "config.json").is_file()
    # Stop mid task 2 and resume: the task-1 row must come back from the checkpoint.
    shutil.rmtree(out / "checkpoint-4")
    shutil.rmtree(out / "report")
    assert run([*common, "--output_dir", out, "--resume_from_checkpoint", "latest"]) == 0
    resumed = json.loads((out / "report" / "metrics.json").read_text())
    assert resumed["tasks"] == [1, 2] and resumed["matrices"]["accuracy"][0] == metrics["matrices"]["accuracy"][0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eval_num_samples", "1"], "--eval_num_samples must be >= 2"),
        ([], "needs --test_data_path"),
    ],
)
def test_evaluation_flag_errors(tmp_path, task_file, capsys, flags, message):
    argv = ["--data_path", task_file(), "--output_dir", tmp_path / "o", "--eval_every_task", *TINY_FLAGS, *flags]
    if "--eval_num_samples" in flags:
        argv += ["--test_data_path", task_file()]
    assert run(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_standalone_report_over_a_run_dir(tmp_path, task_file):
    from continual_diffusers.evaluation.__main__ import main as eval_main

    data = task_file(per_task=16)
    out = tmp_path / "run"
    replay = ["--buffer_type", "reservoir", "--buffer_size", 4]  # its buffer is read back from the checkpoints
    assert run(["--data_path", data, "--output_dir", out, "--max_train_steps", 1, *replay, *TINY_FLAGS]) == 0
    argv = [
        "report",
        "--run_dir",
        out,
        "--data_path",
        data,
        "--test_data_path",
        data,
        "--eval_num_samples",
        4,
        "--num_inference_steps",
        2,
    ]
    assert eval_main([str(a) for a in argv]) == 0
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["tasks"] == [1, 2] and len(metrics["matrices"]["frechet"][1]) == 2
    assert metrics["curves"]["buffer_share"] == [0.25]  # after task 2: task 1's buffer, from checkpoint-1
    assert eval_main(["report", "--run_dir", str(tmp_path)]) == 2
