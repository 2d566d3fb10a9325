"""benchmarks/compare_strategies.py on a user's own task files (--data_path / --test_data_path): a tiny model, one
optimizer step per task, one seed; the table comes out with its sample sizes, and the replay row's buffer
attraction with its references (the buffer's share, joint training's samples against the same buffer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import TINY_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The model-size flags of the tiny test model; the benchmark sets batch size, logger and seed itself.
MODEL = " ".join(TINY_FLAGS[: TINY_FLAGS.index("--eval_batch_size")])


@pytest.mark.slow  # ~40 s of CPU: four Python processes (the script, the oracle, two runs)
def test_the_table_runs_on_a_users_task_files(tmp_path, task_file):
    data = task_file(per_task=16)
    out = tmp_path / "cmp"
    cmd = [
        *[sys.executable, os.path.join(ROOT, "benchmarks", "compare_strategies.py"), "--output_dir", str(out)],
        *["--data_path", data, "--test_data_path", data, "--methods", "replay_1pct", "joint", "--seeds", "0"],
        *["--steps_per_task", "1", "--batch_size", "4", "--eval_num_samples", "4", "--run_flags", MODEL],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "N = 4 generated vs M = 16 real images per task" in result.stdout
    rows = json.loads((out / "results.json").read_text())["results"]
    replay = rows["replay_1pct"][0]
    assert replay["buffer_share"] == 1 / 16 and 0 <= replay["joint_attraction"] <= 1  # 1 % of 32 images: 1 image
    assert "buffer_attraction" not in rows["joint"][0]
    assert "| replay_1pct | 1 |" in result.stdout and "| joint | 1 |" in result.stdout
    bad = subprocess.run([*cmd[:2], "--data_path", data], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--data_path and --test_data_path go together" in bad.stderr
