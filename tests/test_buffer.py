"""ReplayBuffer and its selection policies: reservoir uniformity (χ²), exact task-balanced split, label balance
without the rarest class capping everyone, uint8 storage size, determinism and state round trip."""

from __future__ import annotations

import pytest
import torch

from continual_diffusers.data.buffer import AllData, NoData, ReplayBuffer, Reservoir, TaskBalanced, balanced_quota
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.seed import make_generator


def _images(n: int, c: int = 3, h: int = 4, w: int = 5, start: int = 0) -> torch.Tensor:
    """uint8 (n, c, h, w) whose first pixel encodes the stream position (mod 256)."""
    images = torch.zeros(n, c, h, w, dtype=torch.uint8)
    images[:, 0, 0, 0] = (torch.arange(start, start + n) % 256).to(torch.uint8)
    return images


def _fill(policy, sizes: list[int], seed: int = 0, labels_fn=None) -> ReplayBuffer:
    buffer, start = ReplayBuffer(policy), 0
    for task_id, n in enumerate(sizes, start=1):
        labels = labels_fn(task_id, n) if labels_fn else None
        buffer.add_task(task_id, _images(n, start=start), labels, make_generator(seed, "buffer", task_id))
        start += n
    return buffer


def test_reservoir_keeps_every_stream_item_with_equal_probability():
    sizes, capacity, runs = [7, 5, 8], 6, 1000
    counts = torch.zeros(sum(sizes))
    for seed in range(runs):
        buffer = _fill(Reservoir(capacity), sizes, seed)
        assert len(buffer) == capacity
        counts[buffer.images[:, 0, 0, 0].long()] += 1
    expected = runs * capacity / sum(sizes)
    statistic = ((counts - expected) ** 2 / expected).sum().item()
    # χ² with N − 1 = 19 degrees of freedom (the total is fixed): 43.82 is its 0.999 quantile.
    assert statistic < 43.82, (statistic, counts)


def test_reservoir_fills_before_replacing_and_counts_the_stream():
    buffer = _fill(Reservoir(10), [4, 3])
    assert len(buffer) == 7 and buffer.num_seen == 7
    assert sorted(buffer.images[:, 0, 0, 0].tolist()) == list(range(7))
    buffer.add_task(3, _images(20, start=7), None, make_generator(0, "t3"))
    assert len(buffer) == 10 and buffer.num_seen == 27


def test_task_balanced_split_is_exact():
    buffer = _fill(TaskBalanced(10), [20])
    assert len(buffer) == 10
    buffer.add_task(2, _images(20, start=20), None, make_generator(0, 2))
    assert torch.bincount(buffer.task_ids).tolist() == [0, 5, 5]
    buffer.add_task(3, _images(20, start=40), None, make_generator(0, 3))
    assert sorted(torch.bincount(buffer.task_ids)[1:].tolist()) == [3, 3, 4] and len(buffer) == 10
    # A task smaller than its share keeps everything; its unused slots go to the others.
    small = _fill(TaskBalanced(10), [20, 2, 20])
    assert torch.bincount(small.task_ids).tolist() == [0, 4, 2, 4]


def test_task_balanced_shares_stay_subsets_of_the_original_task():
    buffer = _fill(TaskBalanced(12), [30, 30, 30])
    for task_id in (1, 2, 3):
        ids = buffer.images[buffer.task_ids == task_id, 0, 0, 0].long()
        assert ((ids >= 30 * (task_id - 1)) & (ids < 30 * task_id)).all() and len(ids.unique()) == len(ids)


def test_label_uniform_never_starves_a_label_when_capacity_allows():
    def labels(task_id, n):  # 50 / 2 / 30 items of three classes
        return torch.tensor([0] * 50 + [1] * 2 + [2] * 30)[:n] + 3 * (task_id - 1)

    buffer = _fill(TaskBalanced(12, label_uniform=True), [82], labels_fn=labels)
    assert torch.bincount(buffer.labels).tolist() == [5, 2, 5]  # the earlier rule gave min(12 // 3, 2) = 2 each
    for capacity in range(6, 40):  # two tasks × three labels: every label kept once each share ≥ 3
        buffer = _fill(TaskBalanced(capacity, label_uniform=True), [82, 82], seed=capacity, labels_fn=labels)
        assert len(buffer) == capacity and (torch.bincount(buffer.labels, minlength=6) > 0).all()


def test_balanced_quota_properties():
    gen = torch.Generator().manual_seed(0)
    for counts, total in [([5, 5, 5], 7), ([1, 100, 100], 50), ([0, 3], 10), ([4, 4], 1), ([], 3)]:
        quota = balanced_quota(counts, total, gen)
        assert sum(quota) == min(total, sum(counts)) and all(q <= c for q, c in zip(quota, counts))
        free = [q for q, c in zip(quota, counts) if q < c]
        assert not free or max(quota) - min(free) <= 1


def test_uint8_storage_takes_n_h_w_c_bytes():
    buffer = _fill(AllData(), [6, 4])
    n, c, h, w = buffer.images.shape
    assert buffer.images.dtype == torch.uint8 and n == 10 and buffer.nbytes == n * h * w * c


def test_no_data_and_all_data():
    assert len(_fill(NoData(), [5, 5])) == 0
    buffer = _fill(AllData(), [5, 3])
    assert buffer.task_ids.tolist() == [1] * 5 + [2] * 3
    assert buffer.images[:, 0, 0, 0].tolist() == list(range(8))  # added once each, never duplicated


def test_same_seed_gives_the_same_buffer_and_captions_follow_their_images():
    def captions(task_id, n):
        return [f"t{task_id} i{i}" for i in range(n)]

    a = _fill(TaskBalanced(5), [9, 9], seed=3, labels_fn=captions)
    b = _fill(TaskBalanced(5), [9, 9], seed=3, labels_fn=captions)
    assert torch.equal(a.images, b.images) and a.labels == b.labels
    for image, caption in zip(a.images, a.labels):
        position = int(image[0, 0, 0])
        assert caption == f"t{1 + position // 9} i{position % 9}"


@pytest.mark.parametrize("labels_fn", [None, lambda k, n: torch.arange(n) + 10 * k, lambda k, n: ["a"] * n])
def test_state_round_trip(labels_fn):
    buffer = _fill(Reservoir(4), [5, 5], labels_fn=labels_fn)
    restored = ReplayBuffer(Reservoir(4))
    restored.load_state_dict(buffer.state_dict())
    for b in (buffer, restored):
        b.add_task(3, _images(6, start=10), labels_fn(3, 6) if labels_fn else None, make_generator(0, 3))
    assert torch.equal(buffer.images, restored.images) and buffer.num_seen == restored.num_seen == 16
    if labels_fn is not None:
        assert (
            buffer.labels == restored.labels
            if isinstance(buffer.labels, list)
            else torch.equal(buffer.labels, restored.labels)
        )


@pytest.mark.parametrize("other", [Reservoir(5), TaskBalanced(4), TaskBalanced(4, label_uniform=True)])
def test_a_buffer_made_by_another_policy_is_refused(other):
    state = _fill(Reservoir(4), [5, 5]).state_dict()
    assert state["policy"] == "Reservoir(capacity=4)"
    with pytest.raises(UserInputError, match=r"made by Reservoir\(capacity=4\).*--buffer_type"):
        ReplayBuffer(other).load_state_dict(state)


def test_bad_inputs_are_refused():
    buffer = _fill(AllData(), [3])
    with pytest.raises(ValueError, match="uint8"):
        buffer.add_task(2, torch.zeros(2, 3, 4, 5), None, make_generator(0))
    with pytest.raises(ValueError, match="do not match"):
        buffer.add_task(2, torch.zeros(2, 3, 8, 8, dtype=torch.uint8), None, make_generator(0))
    with pytest.raises(ValueError, match="new labels are class but the buffer holds none"):
        buffer.add_task(2, _images(2), torch.tensor([0, 1]), make_generator(0))
    with pytest.raises(ValueError, match="needs integer class labels"):
        ReplayBuffer(TaskBalanced(3, label_uniform=True)).add_task(1, _images(2), None, make_generator(0))
    with pytest.raises(ValueError, match="capacity"):
        Reservoir(-1)
