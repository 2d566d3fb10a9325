"""Peak RSS stays flat across tasks (slow): benchmarks/bench_memory.py over the 5 digit tasks with EMA, replay, online
EWC (constant-size state) and checkpoints; the per-task peak of tasks 3–5 may exceed task 2's by at most
MAX_GROWTH_MB. Measured +12.4 MB at 50 steps/task (allocator noise on a ~630 MB process;
docs/reliability-and-threat-model.md); a leaked AdamW optimizer per task (≈ 13 MB for this 1.1 M-parameter UNet)
would add ≈ 39 MB by task 5."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_GROWTH_MB = 25.0


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc to reset the RSS peak")
def test_peak_rss_is_flat_across_five_tasks():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=ROOT)
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "bench_memory.py"), "--steps", "20", "--ewc_mode",
           "online", "--max_growth_mb", str(MAX_GROWTH_MB)]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    table = result.stdout[result.stdout.find("peak RSS per task") :]
    assert result.returncode == 0, table or result.stderr[-3000:]
    assert "VmHWM reset per task" in table and table.count("\n") >= 8
