"""`Unconditional`: no condition. Labelled data trains an unconditional model fine: labels are simply ignored (the
export still lists each task's classes, which the oracle's task shares of unconditional samples read)."""

from __future__ import annotations

from typing import Literal

import torch

from .base import BuildContext, Conditioning


class Unconditional(Conditioning):
    kind: Literal["none"] = "none"
    description = "unconditional"
    conditional = False
    oracle_evaluation = "pooled"
    supports_null = False

    def encode(self, labels, device: torch.device) -> dict:
        return {}

    def null(self, batch_size: int, device: torch.device) -> dict:
        return {}

    @classmethod
    def build(cls, context: BuildContext) -> Unconditional:
        return cls()

    @classmethod
    def from_spec(cls, spec, modules: dict) -> Unconditional:
        return cls()
