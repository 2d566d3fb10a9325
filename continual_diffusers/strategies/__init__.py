"""Continual-learning strategies behind one hook contract (`base.ContinualStrategy`). `STRATEGIES` maps the CLI
names to the classes, and each class names its options' dataclass (`config`, a `StrategyConfig`: the CLI's flags
come from it, strategies/context.py); `CombinedStrategy` runs several of them together; `LoRAAdapters` (per-task
adapters, needs peft) is injected by main_ldm.py."""

from .base import ContinualStrategy, Naive, NaiveConfig, TaskContext
from .combined import CombinedStrategy
from .context import StrategyConfig, StrategyContext
from .ewc import EWC, EWCConfig, estimate_fisher
from .generative_replay import GenerativeReplay, GenerativeReplayConfig
from .lora import LoRAAdapters, LoRAConfig
from .replay import Replay, ReplayConfig
from .si import SIConfig, SynapticIntelligence

# Registry order is hook order in a combination: generative replay comes after buffer replay so its rows are the
# last ones of a batch (its distillation penalty relies on that).
STRATEGIES = {
    "naive": Naive,
    "replay": Replay,
    "generative_replay": GenerativeReplay,
    "ewc": EWC,
    "si": SynapticIntelligence,
}

__all__ = [
    "EWC",
    "EWCConfig",
    "GenerativeReplay",
    "GenerativeReplayConfig",
    "LoRAAdapters",
    "LoRAConfig",
    "STRATEGIES",
    "CombinedStrategy",
    "ContinualStrategy",
    "Naive",
    "NaiveConfig",
    "Replay",
    "ReplayConfig",
    "SIConfig",
    "StrategyConfig",
    "StrategyContext",
    "SynapticIntelligence",
    "TaskContext",
    "estimate_fisher",
]
