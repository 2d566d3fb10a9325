"""Continual-learning strategies behind one hook contract (`base.ContinualStrategy`). `STRATEGIES` maps the CLI
names to the classes; `CombinedStrategy` runs several of them together."""

from .base import ContinualStrategy, Naive, TaskContext
from .combined import CombinedStrategy
from .ewc import EWC, estimate_fisher
from .replay import Replay
from .si import SynapticIntelligence

STRATEGIES = {"naive": Naive, "replay": Replay, "ewc": EWC, "si": SynapticIntelligence}

__all__ = [
    "EWC",
    "STRATEGIES",
    "CombinedStrategy",
    "ContinualStrategy",
    "Naive",
    "Replay",
    "SynapticIntelligence",
    "TaskContext",
    "estimate_fisher",
]
