"""Replay strategy: fills the buffer from the task's original data, keeps labels with their images, mixes by
concatenation (in proportion to the buffer) or by a fixed ratio, weights replayed losses, is deterministic, and its
state round trip replays the same batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from continual_diffusers.data import ImageTransform, Task, TaskDataset
from continual_diffusers.data.buffer import AllData, ReplayBuffer, TaskBalanced
from continual_diffusers.strategies import Replay, TaskContext
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.seed import make_generator

SIZES = {1: 8, 2: 8, 3: 12}


def _task(task_id: int, kind: str = "class") -> Task:
    """Every image is constant: its pixel value is its class id × 10, so labels can be checked against images."""
    n = SIZES[task_id]
    classes = np.array([2 * task_id - 2, 2 * task_id - 1]).repeat(n // 2)
    images = (classes * 10).astype(np.uint8)[:, None, None, None].repeat(8, 1).repeat(8, 2).repeat(3, 3)
    labels = {"class": classes, "text": np.array([f"class {c}" for c in classes]), "none": None}[kind]
    return Task(task_id, images, labels)


def _replay(policy=None, **kw) -> Replay:
    return Replay(ReplayBuffer(policy or AllData()), ImageTransform(8), SIZES, **kw)


def _finish(replay: Replay, task_id: int, kind: str = "class") -> None:
    dataset = TaskDataset(_task(task_id, kind), ImageTransform(8))
    replay.after_task(None, TaskContext(task_id, dataset, None, None, torch.device("cpu"), seed=0))


@pytest.mark.parametrize("kind", ["class", "text", "none"])
def test_replayed_labels_belong_to_their_images(kind):
    replay = _replay()
    _finish(replay, 1, kind)
    _finish(replay, 2, kind)
    replay.before_task(None, 3)
    batch = replay.replay_batch(12, make_generator(0, "data"))
    pixel = ((batch["images"][:, 0, 0, 0] + 1) * 127.5).round().long()  # back to the uint8 value = class × 10
    assert batch["images"].shape == (16, 3, 8, 8) and batch["images"].dtype == torch.float32
    assert set(pixel.tolist()) <= {0, 10, 20, 30}
    if kind == "none":
        assert "labels" not in batch
    elif kind == "class":
        assert torch.equal(batch["labels"], pixel // 10)
    else:
        assert batch["labels"] == [f"class {p // 10}" for p in pixel.tolist()]


def test_nothing_to_replay_before_the_first_task_ends():
    replay = _replay()
    replay.before_task(None, 1)
    assert replay.replay_batch(4, make_generator(0)) is None


def test_concat_mode_replays_in_proportion_to_the_buffer():
    replay = _replay(TaskBalanced(6))
    _finish(replay, 1)
    replay.before_task(None, 2)
    assert replay.num_replay(4, make_generator(0)) == 3  # 4 · 6 / 8 (buffer 6, current task 8)
    _finish(replay, 2)
    replay.before_task(None, 3)
    counts = [replay.num_replay(5, make_generator(0, i)) for i in range(4000)]
    assert set(counts) == {2, 3} and abs(np.mean(counts) - 5 * 6 / 12) < 0.05  # random rounding, exact mean


def test_ratio_mode_gives_a_fixed_replay_fraction():
    replay = _replay(mixing="ratio", replay_ratio=0.5)
    _finish(replay, 1)
    replay.before_task(None, 2)
    assert replay.num_replay(4, make_generator(0)) == 4
    replay = _replay(mixing="ratio", replay_ratio=0.25)
    _finish(replay, 1)
    replay.before_task(None, 2)
    counts = [replay.num_replay(3, make_generator(1, i)) for i in range(4000)]
    assert set(counts) == {1} and replay.num_replay(4, make_generator(0)) in (1, 2)
    assert _replay(mixing="ratio", replay_ratio=0.0).replay_batch(4, make_generator(0)) is None


def test_loss_weight_is_passed_to_the_trainer():
    replay = _replay(loss_weight=0.3)
    _finish(replay, 1)
    replay.before_task(None, 2)
    assert replay.replay_batch(4, make_generator(0))["loss_weight"] == 0.3
    plain = _replay()
    _finish(plain, 1)
    plain.before_task(None, 2)
    assert "loss_weight" not in plain.replay_batch(4, make_generator(0))


def test_batches_are_deterministic_and_survive_a_state_round_trip():
    replay = _replay(TaskBalanced(5))
    _finish(replay, 1)
    _finish(replay, 2)
    restored = _replay(TaskBalanced(5))
    restored.load_state_dict(replay.state_dict())
    for r in (replay, restored):
        r.before_task(None, 3)
    a, b = replay.replay_batch(6, make_generator(0, 7)), restored.replay_batch(6, make_generator(0, 7))
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])
    assert replay.buffer.images.dtype == torch.uint8 and len(replay.buffer) == 5
    with pytest.raises(UserInputError, match="not a replay buffer"):
        _replay().load_state_dict({"mode": "separate"})


def test_bad_arguments_are_refused():
    for kw, message in [
        ({"mixing": "interleave"}, "mixing"),
        ({"replay_ratio": 1.0}, "replay_ratio"),
        ({"loss_weight": -1.0}, "loss_weight"),
    ]:
        with pytest.raises(ValueError, match=message):
            _replay(**kw)


def test_the_evaluation_sees_the_buffer_the_task_trained_with():
    """`replayed_images`: the buffer as `before_task` found it, so the finished task's own images (added by
    `after_task`, before the end-of-task evaluation) are not in it; none for joint training (all_data)."""
    from continual_diffusers.strategies.combined import CombinedStrategy
    from continual_diffusers.strategies.replay import replayed_images, replayed_images_in_checkpoint

    replay = _replay(TaskBalanced(4))
    _finish(replay, 1)
    replay.before_task(None, 2)
    _finish(replay, 2)  # task 2 joins the buffer for task 3
    seen = replayed_images(replay)
    assert list(seen) == [1] and seen[1].shape == (4, 3, 8, 8) and seen[1].dtype == torch.uint8
    assert set(seen[1][:, 0, 0, 0].tolist()) <= {0, 10}  # task 1's classes 0 and 1 (pixel = class × 10)
    # A checkpoint holds the buffer after `after_task`: the one the next task trains with, also inside a combination.
    state = CombinedStrategy([replay]).state_dict()
    from_checkpoint = replayed_images_in_checkpoint(state)
    assert sorted(from_checkpoint) == [1, 2] and sum(len(v) for v in from_checkpoint.values()) == 4
    joint = _replay(AllData())
    _finish(joint, 1)
    joint.before_task(None, 2)
    assert replayed_images(joint) is None and replayed_images_in_checkpoint(joint.state_dict()) is None
    assert replayed_images(CombinedStrategy([_replay(TaskBalanced(4))])) == {}  # before any task: empty
