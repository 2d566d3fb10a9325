"""Experience replay: after each task, offer its ORIGINAL data to a `ReplayBuffer`; during later tasks, add
buffered samples to every micro-batch (Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning").

How many replay samples join a batch of B current samples (the trainer concatenates them):
- `concat` (the earlier implementation's behaviour, which concatenated buffer and task and shuffled): in
  proportion to their count, B·M/N on average for M buffered and N current-task samples (rounded at random, so
  the expectation is exact). The batch grows with the buffer, as the earlier epochs did.
- `ratio`: a fixed fraction r of each combined batch, B·r/(1 − r) replay samples (r = 0.5 → B of each).
Replayed samples' losses may be weighted (`loss_weight`), e.g. the reduced rehearsal weight of Zając et al. 2023.
Either way every step still takes B new samples of the task; only the batch grows. Its memory does not: the trainer
runs a batch of more than `TrainConfig.rows_per_pass` rows (default B) in several forward/backward passes whose
gradients add up to the whole batch's, so the step is the same and the activations held at once are those of one pass.
With `TrainConfig.replay_rows = "within"` the replayed rows take their share of a batch of B rows instead
(`replay_share`: M/(N + M) for `concat`, r for `ratio`; `replay_rows` draws exactly the number the batch schedule
asks for), so a step takes fewer new samples and an epoch more steps (`training.batches`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..data.buffer import AllData, NoData, ReplayBuffer, Reservoir, TaskBalanced
from ..data.transforms import ImageTransform
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.faults import fault_point
from ..utils.options import option, options_group, parse_bool
from ..utils.seed import make_generator
from .base import ContinualStrategy, TaskContext
from .context import StrategyConfig, StrategyContext

MixingMode = Literal["concat", "ratio"]
# --buffer_type values: the earlier names (reservoir = task-balanced random subsets) plus clearer aliases.
BUFFER_POLICIES = {
    "no_data": "nothing is stored: plain fine-tuning",
    "all_data": "every sample of every past task: joint training (unbounded)",
    "reservoir": "the earlier name of task_balanced",
    "task_balanced": "--buffer_size slots split evenly over past tasks, a random subset of each",
    "stream_reservoir": "true reservoir sampling over the stream: each seen sample kept with equal probability",
}
LABEL_BALANCED = ("reservoir", "task_balanced")  # the policies that can balance labels


@options_group("Replay", "experience replay from a buffer of past tasks' samples")
@dataclass
class ReplayConfig(StrategyConfig):
    """Buffer replay's options (`--buffer_type` enables it; None: task_balanced when enabled by `--strategy`)."""

    name = "replay"
    enabled_by = "buffer_type"
    enable_hint = " or --buffer_type"

    buffer_type: str | None = option(
        None, choices=list(BUFFER_POLICIES), flags=("--buffer_type", "--buffer_policy"),
        help="enables replay; " + "; ".join(f"{k}: {v}" for k, v in BUFFER_POLICIES.items()),
    )  # fmt: skip
    buffer_size: int = option(
        1000, bounds=b.BUFFER_SIZE,
        help="total replay slots over all past tasks (task_balanced / reservoir / stream_reservoir)",
    )  # fmt: skip
    retain_label_uniform_sampling: bool = option(
        False, parse=parse_bool, nargs="?", const=True,
        help="balance class labels within each task's share (task_balanced / reservoir)",
    )  # fmt: skip
    replay_ratio: float | None = option(
        None, bounds=b.PROBABILITY,
        help="fixed replay fraction of every batch in [0, 1); unset: in proportion to the buffer size",
    )  # fmt: skip
    replay_loss_weight: float = option(1.0, bounds=b.NON_NEGATIVE, help="replayed loss × w")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retain_label_uniform_sampling and (self.buffer_type or "task_balanced") not in LABEL_BALANCED:
            raise UserInputError("--retain_label_uniform_sampling applies to --buffer_type reservoir / task_balanced")

    def check(self, context: StrategyContext) -> None:
        if self.retain_label_uniform_sampling and context.tasks.label_kind != "class":
            raise UserInputError(
                f"--retain_label_uniform_sampling needs class labels, the task file has {context.tasks.label_kind}"
            )

    def build(self, context: StrategyContext) -> Replay:
        size, balanced = self.buffer_size, self.retain_label_uniform_sampling
        policy = {
            "no_data": NoData,
            "all_data": AllData,
            "stream_reservoir": lambda: Reservoir(size),
            "reservoir": lambda: TaskBalanced(size, balanced),
            "task_balanced": lambda: TaskBalanced(size, balanced),
        }[self.buffer_type or "task_balanced"]()
        return Replay(
            ReplayBuffer(policy),
            context.transform,
            {t.task_id: len(t) for t in context.tasks},
            mixing="concat" if self.replay_ratio is None else "ratio",
            replay_ratio=self.replay_ratio or 0.0,
            loss_weight=self.replay_loss_weight,
        )


class Replay(ContinualStrategy):
    """Experience replay from a `ReplayBuffer`.

    Args:
        buffer: storage and selection policy.
        transform: the training image transform (crop/flip/scale of the stored uint8 images).
        task_sizes: number of samples of each task id (`concat` mode needs the current task's size).
        mixing: `concat` or `ratio` (module docstring).
        replay_ratio: replay fraction of each combined batch in `ratio` mode, in [0, 1).
        loss_weight: weight of replayed samples' losses (current samples weigh 1).
    """

    name = "replay"
    config = ReplayConfig

    def __init__(
        self,
        buffer: ReplayBuffer,
        transform: ImageTransform,
        task_sizes: dict[int, int],
        mixing: MixingMode = "concat",
        replay_ratio: float = 0.5,
        loss_weight: float = 1.0,
    ):
        if mixing not in ("concat", "ratio"):
            raise ValueError(f"mixing must be 'concat' or 'ratio', got {mixing!r}")
        b.PROBABILITY.check("replay_ratio", replay_ratio)  # the bounds of the flags (ReplayConfig)
        b.NON_NEGATIVE.check("loss_weight", loss_weight)
        self.buffer = buffer
        self.transform = transform
        self.task_sizes = dict(task_sizes)
        self.mixing = mixing
        self.replay_ratio = replay_ratio
        self.loss_weight = loss_weight
        self._task_id: int | None = None
        self.replayed: dict[int, torch.Tensor] = {}  # the buffer this task trains with (`replayed_images`)

    def before_task(self, model: nn.Module, task_id: int, apply_ema=None) -> None:
        self._task_id = task_id
        self.replayed = buffer_by_task(self.buffer.images, self.buffer.task_ids)

    def num_replay(self, batch_size: int, generator: torch.Generator) -> int:
        """Replay samples to add to a batch of `batch_size` current samples (randomly rounded expectation)."""
        if len(self.buffer) == 0:
            return 0
        if self.mixing == "ratio":
            expected = batch_size * self.replay_ratio / (1.0 - self.replay_ratio)
        else:
            expected = batch_size * len(self.buffer) / self.task_sizes[self._task_id]
        whole = math.floor(expected)
        return whole + int(torch.rand((), generator=generator).item() < expected - whole)

    def replay_batch(self, batch_size: int, generator: torch.Generator) -> dict | None:
        """{"images": float (R, C, H, W) in [-1, 1], "labels": long (R,) | list[str] (if labelled),
        "loss_weight": float (if ≠ 1)}, or None when the buffer is empty or R = 0."""
        return self.replay_rows(self.num_replay(batch_size, generator), generator)

    def replay_share(self, task_id: int | None) -> float:
        """Replayed rows' expected share of a fixed-size batch (`TrainConfig.replay_rows = "within"`): M/(N + M)
        for `concat` (M buffered, N current-task samples: the rows of the buffer and the task shuffled together, as
        the earlier implementation's epochs were), r for `ratio`; 0 while the buffer is empty."""
        if task_id is None or len(self.buffer) == 0:
            return 0.0
        if self.mixing == "ratio":
            return self.replay_ratio
        return len(self.buffer) / (self.task_sizes[task_id] + len(self.buffer))

    def replay_rows(self, num: int, generator: torch.Generator) -> dict | None:
        """`num` rows drawn uniformly from the buffer (the batch of `replay_batch`); None for num = 0."""
        if num == 0:
            return None
        images, labels = self.buffer.get(self.buffer.sample_indices(num, generator))
        batch: dict = {"images": self.transform(images, generator)}
        if labels is not None:
            batch["labels"] = labels
        if self.loss_weight != 1.0:
            batch["loss_weight"] = self.loss_weight
        return batch

    def after_task(self, model: nn.Module, context: TaskContext) -> None:
        """Offer the finished task's original data (prepared uint8 images + labels) to the buffer."""
        dataset = context.dataset
        images = dataset.images  # uint8 (N, C, H', W') as prepared once by TaskDataset
        labels = dataset.labels
        if labels is not None:
            labels = [str(x) for x in labels] if dataset.label_kind == "text" else torch.as_tensor(labels).long()
        generator = make_generator(context.seed, "replay_buffer", context.task_id)
        self.buffer.add_task(context.task_id, images, labels, generator)
        fault_point("replay_filled")

    def state_dict(self) -> dict:
        return {f"buffer.{k}": v for k, v in self.buffer.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        unknown = [k for k in state if not k.startswith("buffer.")]
        if unknown or "buffer.num_seen" not in state:
            raise UserInputError(
                f"the checkpoint's strategy state {sorted(state)[:3]}… is not a replay buffer; "
                "resume with the strategy flags the run was started with"
            )
        self.buffer.load_state_dict({k[len("buffer.") :]: v for k, v in state.items()})


def buffer_by_task(images: torch.Tensor | None, task_ids: torch.Tensor) -> dict[int, torch.Tensor]:
    """{task id: uint8 (B_t, C, H, W)} of a buffer's images (None or empty: {})."""
    if images is None or len(task_ids) == 0:
        return {}
    return {int(t): images[task_ids == t] for t in task_ids.unique()}


def replayed_images(strategy: ContinualStrategy) -> dict[int, torch.Tensor] | None:
    """The replay buffer the current (or just finished) task trained with, {task id: uint8 (B_t, C, H, W)} as the
    run stored the images, for the evaluation's buffer attraction; None for a run without a bounded buffer (no
    replay, or `all_data`, whose buffer is every past image: joint training has nothing to be attracted to).

    It is the buffer as `before_task` found it: the finished task's own images join the buffer in `after_task`,
    before the end-of-task evaluation, but were never replayed."""
    parts = getattr(strategy, "strategies", [strategy])  # a CombinedStrategy runs several
    for part in parts:
        if isinstance(part, Replay) and not isinstance(part.buffer.policy, (AllData, NoData)):
            return part.replayed
    return None


def replayed_images_in_checkpoint(strategy_state: dict) -> dict[int, torch.Tensor] | None:
    """`replayed_images` from a checkpoint's strategy state (`training.checkpoint.read_strategy_state`): the buffer
    of a checkpoint taken during task k, or at the end of task k − 1, is the one task k trained with. None when
    the state holds no bounded replay buffer."""
    for key, value in strategy_state.items():
        if not key.endswith("buffer.policy"):
            continue
        prefix = key[: -len("policy")]
        if str(value).startswith(("AllData", "NoData")):
            return None
        images, task_ids = strategy_state.get(prefix + "images"), strategy_state.get(prefix + "task_ids")
        if task_ids is None or (images is not None and (images.dtype != torch.uint8 or images.ndim != 4)):
            raise UserInputError(f"the checkpoint's replay buffer ({prefix}…) is not uint8 images with task ids")
        return buffer_by_task(images, task_ids.long())
    return None
