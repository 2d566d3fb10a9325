from .base import ContinualStrategy, Naive, TaskContext

STRATEGIES = {"naive": Naive}

__all__ = ["STRATEGIES", "ContinualStrategy", "Naive", "TaskContext"]
