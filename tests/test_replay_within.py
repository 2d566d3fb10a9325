"""`--replay_rows within`: replayed rows take their share of a fixed-size batch. The schedule's arithmetic (the rows
add up, every example once per epoch on every process count), the trainer's batches and step counts, an
interrupted run resuming to identical weights, and the strategies it refuses."""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction

import pytest
import torch
from conftest import TINY_FLAGS
from safetensors.torch import load_file
from test_row_passes import _after_first_task, _replay, _trainer

import main_ddpm
from continual_diffusers.strategies import EWC, CombinedStrategy, ContinualStrategy
from continual_diffusers.training.batches import BatchSchedule
from continual_diffusers.utils.errors import UserInputError


def run(argv) -> int:
    return main_ddpm.main([str(a) for a in argv])


@pytest.mark.parametrize("rho", [Fraction(0), Fraction(2), Fraction(40, 17), Fraction(29, 10)])
@pytest.mark.parametrize("world", [1, 3])
def test_schedule_rows_add_up_and_each_example_is_seen_once_per_epoch(rho, world):
    n, batch = 23, 4
    ranks = [BatchSchedule(n, batch, world, r, seed=0, task_id=1, replay_per_step=rho) for r in range(world)]
    steps = ranks[0].steps_per_epoch
    assert steps == math.ceil(n / (world * (batch - rho)))
    replayed = [ranks[0].replay_rows(j) for j in range(50)]
    assert all(math.floor(j * rho) == sum(replayed[:j]) for j in range(50))  # Σ R_j = ⌊jρ⌋: within one row of jρ
    seen = []
    for j in range(steps):
        for schedule in ranks:
            indices = schedule.indices(j)
            assert len(indices) == batch - schedule.replay_rows(j)
            seen += indices.tolist()
    assert sorted(seen[:n]) == list(range(n))  # the first epoch's stream, once each, before the next epoch starts
    assert len(seen) - n < world * batch  # only the last step reaches into the next epoch
    if rho == 0:  # no replay inside: the batches of the plain schedule
        plain = BatchSchedule(n, batch, world, 0, seed=0, task_id=1)
        assert all(torch.equal(plain.indices(j), ranks[0].indices(j)) for j in range(steps))


def test_schedule_refuses_a_batch_without_task_examples():
    with pytest.raises(ValueError):
        BatchSchedule(8, 4, 1, 0, 0, 1, replay_per_step=3.5)


def test_within_batches_hold_the_batch_size_with_the_buffer_share():
    trainer, tasks = _trainer(_replay(), replay_rows="within")
    dataset, _ = _after_first_task(trainer, tasks)
    schedule = trainer.task_schedule(tasks[2])  # 8 buffered + 8 task images: ρ = 4·8/16 = 2
    assert schedule.replay_per_step == 2 and schedule.steps_per_epoch == math.ceil(8 / (4 - 2))
    for step in range(4):
        batch = trainer._batch(dataset, schedule, 2, step)
        assert (batch.num_rows, batch.num_replay) == (4, 2)


def test_within_run_steps_follow_the_buffer_and_resume_exactly(tmp_path, task_file, caplog):
    common = ["--data_path", task_file(num_tasks=2), "--num_epochs", 1, "--replay_rows", "within",
              "--buffer_type", "reservoir", "--buffer_size", 8, "--checkpointing_steps", 4, *TINY_FLAGS]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    with caplog.at_level("INFO", logger="continual_diffusers"):
        assert run([*common, "--output_dir", straight]) == 0
    assert "task 2 trained: 4 optimizer steps, 16 rows (8 replayed)" in caplog.text  # ⌈(8 + 8)/4⌉ steps of 4 rows
    assert run([*common, "--output_dir", resumed]) == 0
    for name in ("checkpoint-6", "task_2"):  # stopped after global step 4: task 2, step 2 of 4
        shutil.rmtree(resumed / name)
    assert json.loads((resumed / "checkpoint-4" / "training_state.json").read_text())["step_in_task"] == 2
    assert run([*common, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]) == 0
    a, b = (load_file(d / "checkpoint-6" / "model.safetensors") for d in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Generating(ContinualStrategy):
    """Replays rows it makes itself, in a number of its own choosing (like generative replay)."""

    name = "generating"

    def replay_batch(self, batch_size, generator):
        return None


def test_within_refuses_strategies_that_cannot_replay_a_given_number_of_rows():
    with pytest.raises(UserInputError, match="--replay_rows within"):
        _trainer(_Generating(), replay_rows="within")
    trainer, _ = _trainer(CombinedStrategy([EWC(lambda_=1.0), _replay()]), replay_rows="within")
    assert trainer.strategy.replay_share(None) == 0.0
    assert CombinedStrategy([_replay(), _Generating()]).replay_share(1) is None


def test_within_refuses_a_share_that_leaves_no_room_for_the_task(tmp_path, task_file, capsys):
    """Refused when the task starts (the share depends on the buffer that the earlier tasks filled)."""
    argv = ["--data_path", task_file(num_tasks=2), "--output_dir", tmp_path / "run", "--max_train_steps", 1,
            "--replay_rows", "within", "--buffer_type", "reservoir", "--buffer_size", 8, *TINY_FLAGS,
            "--train_batch_size", 1]  # fmt: skip
    assert run(argv) == 2
    assert "leaving no room for the task's own examples" in capsys.readouterr().err
