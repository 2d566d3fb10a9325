"""Kill and resume: a 3-task run (EMA, replay, EWC, end-of-task evaluation, checkpoint pruning) is SIGKILLed at 14
points (mid-step, mid-checkpoint-write, before a checkpoint rename, mid-pruning, after an export, during the
evaluation, during the Fisher estimate, after the buffer is filled, between tasks), resumed with
`--resume_from_checkpoint latest`, and its final weights, EMA, optimizer-free strategy state (replay buffer + EWC
Fisher and anchors), evaluation metrics, report and exports must be bit-identical to an uninterrupted run (CPU).

The kill is real: `CONTINUAL_DIFFUSERS_FAULT=<point>:<n>` (continual_diffusers/utils/faults.py) makes the training
process send itself SIGKILL the n-th time it reaches that point, so no cleanup code runs. After every kill the
harness also checks what a crash may leave behind: every checkpoint `latest` could pick is complete and loadable,
and once a checkpoint has been written one always survives (`--checkpoints_total_limit 2`).

Slow (≈ 30 training processes): `pytest -m slow tests/test_kill_resume.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_FLAGS, make_tasks

from continual_diffusers.data import save_tasks
from continual_diffusers.training import checkpoint as ckpt
from continual_diffusers.utils.faults import ENV

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# 3 tasks × 3 optimizer steps; checkpoints at global steps 2, 3 (task end), 4, 6 (task end), 8, 9 (task end).
# Per task: 2 EWC Fisher chunks, 1 buffer fill, 1 export + 1 evaluation. An atomic write (checkpoint or export)
# passes checkpoint_rename once, a checkpoint passes checkpoint_files twice.
KILL_POINTS = [
    "train_step:1",  # the very first step, before any checkpoint: resume starts from scratch
    "train_step:5",  # mid task 2, after checkpoint-4
    "train_step:8",  # task 3
    "checkpoint_files:1",  # checkpoint-2 half written (weights yes, training_state.json no)
    "checkpoint_files:6",  # checkpoint-4 complete in .tmp but not marked complete
    "checkpoint_rename:4",  # a complete, fsync'ed .tmp folder not yet renamed
    "checkpoint_prune:1",  # an old checkpoint half-deleted by --checkpoints_total_limit
    "export_done:1",  # task_1/ exported, its end-of-task checkpoint not written
    "task_eval:2",  # during the evaluation after task 2
    "ewc_fisher:1",  # during task 1's Fisher estimate
    "ewc_fisher:4",  # during task 2's Fisher estimate (its second chunk)
    "replay_filled:2",  # task 2 in the buffer, Fisher not estimated yet
    "between_tasks:1",  # task 1 fully done, task 2 not started
    "between_tasks:2",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from continual_diffusers.evaluation.classifier import save_oracle, train_oracle

    root = tmp_path_factory.mktemp("kill")
    train, test = make_tasks(num_tasks=3), make_tasks(num_tasks=3, per_task=4)
    save_tasks(str(root / "train.npz"), train)
    save_tasks(str(root / "test.npz"), test)
    oracle, acc = train_oracle(train, test, 8, epochs=1, progress=False)
    save_oracle(oracle, str(root / "oracle"), 8, acc)
    flags = [
        *TINY_FLAGS,
        "--data_path", root / "train.npz", "--test_data_path", root / "test.npz", "--oracle_path", root / "oracle",
        "--max_train_steps", 3, "--checkpointing_steps", 2, "--checkpoints_total_limit", 2,
        "--use_ema", "--classifier_free_guidance", "--random_flip",
        "--buffer_type", "reservoir", "--buffer_size", 6,
        "--ewc_loss", "--lambda_ewc", 100, "--num_samples_ewc", 8, "--ewc_fisher_batch_size", 4,
        "--eval_every_task", "--eval_num_samples", 2,
    ]  # fmt: skip
    reference = root / "reference"
    result = train_process([*flags, "--output_dir", reference])
    assert result.returncode == 0, result.stderr[-3000:]
    return root, [str(f) for f in flags], fingerprint(reference)


def train_process(argv, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    if fault:
        env[ENV] = fault
    cmd = [sys.executable, str(ROOT / "main_ddpm.py"), *map(str, argv)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(out: Path) -> dict:
    """Everything that must not depend on interruptions: final checkpoint files (weights, EMA, replay buffer, EWC
    terms, training state incl. the evaluation history), the metrics, and every task's exported weights."""
    names = [os.path.basename(p) for _, p in ckpt.list_checkpoints(str(out))]
    final = out / "checkpoint-9"
    files = {f.name: digest(f) for f in sorted(final.iterdir())}
    exports = {
        str(f.relative_to(out)): digest(f) for f in sorted(out.glob("task_*/unet*/*.safetensors"))
    }  # fmt: skip
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    return {"checkpoints": names, "final": files, "exports": exports, "metrics": metrics}


def check_crash_leftovers(out: Path, wrote_a_checkpoint_before: bool) -> None:
    found = ckpt.list_checkpoints(str(out))
    for _, path in found:  # whatever `latest` could pick is complete
        ckpt.load_checkpoint(path)
    if wrote_a_checkpoint_before:
        assert found, "the kill left no complete checkpoint although one had been written"


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_run_resumes_to_identical_results(setup, tmp_path, point):
    root, flags, expected = setup
    out = tmp_path / "run"
    killed = train_process([*flags, "--output_dir", out], fault=point)
    assert killed.returncode == -signal.SIGKILL, (
        f"{point} never reached: rc {killed.returncode}\n{killed.stderr[-2000:]}"
    )
    assert not (out / "checkpoint-9").exists()
    check_crash_leftovers(out, wrote_a_checkpoint_before=point not in ("train_step:1", "checkpoint_files:1"))
    resumed = train_process([*flags, "--output_dir", out, "--resume_from_checkpoint", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = fingerprint(out)
    assert got["checkpoints"] == expected["checkpoints"] == ["checkpoint-8", "checkpoint-9"]
    assert got["final"] == expected["final"]
    assert got["exports"] == expected["exports"]
    assert got["metrics"] == expected["metrics"]
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.trash"))


def test_at_least_ten_kill_points():
    assert len(set(KILL_POINTS)) >= 10
    assert {p.split(":")[0] for p in KILL_POINTS} >= {"train_step", "checkpoint_files", "task_eval", "ewc_fisher",
                                                      "between_tasks"}  # fmt: skip
