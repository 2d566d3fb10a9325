"""Two real gloo processes on CPU (`accelerate launch --multi_gpu` with ACCELERATE_USE_CPU), a tiny 2-task job."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import TINY_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None,
    reason="accelerate launcher not installed next to this python",
)
def test_two_process_cpu_run_writes_once(tmp_path, task_file):
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    out = tmp_path / "run"
    cmd = [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        str(free_port()),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        os.path.join(ROOT, "main_ddpm.py"),
        "--data_path",
        task_file(per_task=16),
        "--output_dir",
        str(out),
        "--max_train_steps",
        "2",
        "--use_ema",
        "--energy_based_training",
        *TINY_FLAGS,
    ]
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("training 2 tasks") == 2  # both ranks ran
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "checkpoint-2",
        "checkpoint-4",
        "config.json",
        "task_1",
        "task_2",
    ]
    assert (out / "task_2" / "unet_training").is_dir() and not list(out.glob("*.tmp"))  # unet/ holds the EMA
