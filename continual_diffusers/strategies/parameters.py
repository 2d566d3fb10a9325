"""Named parameters as the regularising strategies keep them (EWC's anchors and Fisher, SI's path integral):
`ParamDict` name → tensor, names as in the unwrapped model (without DDP's "module." prefix)."""

from __future__ import annotations

import torch
from torch import nn

ParamDict = dict[str, torch.Tensor]


def strip_wrapper(name: str) -> str:
    """Parameter name without a leading DDP "module." prefix."""
    return name[len("module.") :] if name.startswith("module.") else name


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """name → parameter for every trainable parameter, names as in the unwrapped model."""
    return {strip_wrapper(n): p for n, p in model.named_parameters() if p.requires_grad}
