"""Batch order (pure function of seed/task/step, disjoint shards) and checkpoint bookkeeping (atomic, latest,
pruning)."""

from __future__ import annotations

import os

import pytest
import torch

from continual_diffusers.training import checkpoint as ckpt
from continual_diffusers.training.batches import BatchSchedule
from continual_diffusers.utils.errors import UserInputError


def test_ranks_get_disjoint_shards_and_an_epoch_covers_every_example():
    n, b, world = 24, 3, 2
    ranks = [BatchSchedule(n, b, world, r, seed=0, task_id=1) for r in range(world)]
    assert ranks[0].steps_per_epoch == 4
    seen = torch.cat([s.indices(j) for j in range(4) for s in ranks])
    assert sorted(seen.tolist()) == list(range(n))


def test_order_is_deterministic_and_differs_between_epochs_and_tasks():
    a, b = BatchSchedule(10, 5, 1, 0, 0, 1), BatchSchedule(10, 5, 1, 0, 0, 1)
    assert all(torch.equal(a.indices(j), b.indices(j)) for j in range(6))
    epoch0 = torch.cat([a.indices(0), a.indices(1)])
    epoch1 = torch.cat([a.indices(2), a.indices(3)])
    assert not torch.equal(epoch0, epoch1)
    other_task = BatchSchedule(10, 5, 1, 0, 0, 2)
    assert not torch.equal(torch.cat([other_task.indices(0), other_task.indices(1)]), epoch0)


def test_partial_last_batch_is_completed_from_the_next_epoch():
    s = BatchSchedule(5, 4, 1, 0, 0, 1)
    assert s.steps_per_epoch == 2 and s.indices(1).shape == (4,)


def _parts():
    return {
        "model_state": {"w": torch.ones(2)},
        "ema_state": None,
        "optimizer_state": {"state": {}, "param_groups": []},
        "lr_scheduler_state": {"last_epoch": 3},
        "scaler_state": None,
        "strategy_state": {"fisher.w": torch.zeros(2), "num_tasks": 1},
    }


def test_save_load_round_trip_and_latest(tmp_path):
    out = str(tmp_path)
    for step in (2, 10, 4):
        ckpt.save_checkpoint(out, step, _parts(), {"global_step": step})
    os.makedirs(tmp_path / "checkpoint-99.tmp")  # an interrupted write
    os.makedirs(tmp_path / "checkpoint-50")  # torn: no training_state.json
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [2, 4, 10]
    latest = ckpt.resolve_resume(out, "latest")
    assert latest.endswith("checkpoint-10")
    parts = ckpt.load_checkpoint(latest)
    torch.testing.assert_close(parts["strategy_state"]["fisher.w"], torch.zeros(2))
    assert parts["strategy_state"]["num_tasks"] == 1 and parts["lr_scheduler_state"]["last_epoch"] == 3


def test_prune_keeps_the_newest(tmp_path):
    out = str(tmp_path)
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(out, step, _parts(), {"global_step": step})
    ckpt.prune_checkpoints(out, 2)
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [3, 4]
    ckpt.prune_checkpoints(out, 0)  # 0/None: no limit
    assert len(ckpt.list_checkpoints(out)) == 2


def test_resume_from_missing_or_torn_checkpoint_is_a_clear_error(tmp_path):
    os.makedirs(tmp_path / "checkpoint-5")
    with pytest.raises(UserInputError, match="not a complete checkpoint"):
        ckpt.resolve_resume(str(tmp_path), str(tmp_path / "checkpoint-5"))
    assert ckpt.resolve_resume(str(tmp_path / "empty"), "latest") is None
