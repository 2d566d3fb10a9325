"""Moved to `continual_diffusers.evaluation.slot_modes` (library logic, not flags); kept for benchmarks/bench_slots.py,
which imports these two names from here."""

from ..evaluation.slot_modes import _concat_conditions, save_sheet

__all__ = ["_concat_conditions", "save_sheet"]
