"""Continual-learning strategies behind one hook contract (`base.ContinualStrategy`). `STRATEGIES` maps the CLI
names to the classes; `CombinedStrategy` runs several of them together; `LoRAAdapters` (per-task adapters, needs
peft) is injected by main_ldm.py."""

from .base import ContinualStrategy, Naive, TaskContext
from .combined import CombinedStrategy
from .ewc import EWC, estimate_fisher
from .generative_replay import GenerativeReplay
from .lora import LoRAAdapters
from .replay import Replay
from .si import SynapticIntelligence

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
    "GenerativeReplay",
    "LoRAAdapters",
    "STRATEGIES",
    "CombinedStrategy",
    "ContinualStrategy",
    "Naive",
    "Replay",
    "SynapticIntelligence",
    "TaskContext",
    "estimate_fisher",
]
