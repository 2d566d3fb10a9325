"""Per-task LoRA adapters as a continual strategy (Hu et al. 2021, "LoRA"; one adapter per task as in
Smith et al. 2023, "Continual Diffusion").

The UNet's base weights are frozen. Every task k gets its own peft adapter "task_k" on the target modules
(W x + (α/r)·B_k A_k x). All adapters are injected up front, when the strategy is built, so the model's parameter
set (and so every checkpoint's keys) is the same for the whole run and an exact resume needs nothing special.
Before task k only adapter k is trainable; which adapters are *active* depends on `mode`:

- "stacked": adapters 1…k are all active (earlier ones frozen): θ_k = θ_0 + Σ_{j≤k} Δ_j. The model after task k
  is the sum, and the exported `unet/` is that sum merged into the base weights.
- "isolated": only adapter k is active: θ_k = θ_0 + Δ_k, a separate expert per task (task identity is then
  needed at inference: choose the adapter).

Each task export also writes every adapter j ≤ k as `lora/task_j/pytorch_lora_weights.safetensors`, in the format
`StableDiffusionPipeline.load_lora_weights` reads, so users can stack, weight or swap them on the base model.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Literal

from torch import nn

from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.options import option, options_group
from .base import ContinualStrategy
from .context import StrategyConfig, StrategyContext

LoraMode = Literal["stacked", "isolated"]
DEFAULT_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")


@options_group("LoRA", "one peft adapter per task on the frozen UNet (a continual strategy)")
@dataclass
class LoRAConfig(StrategyConfig):
    """LoRA's options (main_ldm.py): `lora_rank` > 0 enables it; the adapters go into the context's model."""

    name = "lora"
    enabled_by = "lora_rank"

    lora_rank: int = option(0, bounds=b.LORA_RANK, help="LoRA rank r; 0 = full fine-tuning")
    lora_alpha: float | None = option(None, bounds=b.POSITIVE, help="LoRA α (scale α/r); default α = r")
    lora_target_modules: list[str] = option(list(DEFAULT_TARGETS), nargs="+", help="module-name suffixes")
    lora_mode: str = option(
        "stacked", choices=("stacked", "isolated"),
        help="stacked: task k trains adapter k on top of the frozen adapters 1..k-1; isolated: adapter k alone",
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lora_rank == 0 and self.lora_alpha is not None:
            raise UserInputError("--lora_alpha is set but LoRA is off (set --lora_rank)")

    def export_metadata(self) -> dict:
        """The adapters' settings, as task exports record them."""
        alpha = self.lora_alpha or float(self.lora_rank)
        return {
            "rank": self.lora_rank,
            "alpha": alpha,
            "target_modules": list(self.lora_target_modules),
            "mode": self.lora_mode,
        }

    def build(self, context: StrategyContext) -> LoRAAdapters:
        targets = tuple(self.lora_target_modules)
        try:
            return LoRAAdapters(
                context.model.unet, context.tasks.task_ids, self.lora_rank, self.lora_alpha, targets, self.lora_mode
            )
        except ValueError as err:  # peft: none of the target modules exists in this UNet
            raise UserInputError(f"--lora_target_modules {self.lora_target_modules}: {err}".splitlines()[0]) from err


def adapter_name(task_id: int) -> str:
    return f"task_{task_id}"


class LoRAAdapters(ContinualStrategy):
    """Inject one LoRA adapter per task into `unet` (a diffusers model with peft support) and freeze the rest.

    Args:
        unet: the UNet2DConditionModel being trained (modified in place: adapters injected, base frozen).
        task_ids: every task id of the run, in order.
        rank: LoRA rank r.
        alpha: LoRA α (scale α/r); None → α = r, as diffusers' train_text_to_image_lora.
        target_modules: module-name suffixes to adapt (default: the attention projections).
        mode: "stacked" or "isolated" (module docstring).
    """

    name = "lora"
    config = LoRAConfig

    def __init__(
        self,
        unet: nn.Module,
        task_ids: list[int],
        rank: int = 4,
        alpha: float | None = None,
        target_modules: tuple[str, ...] = DEFAULT_TARGETS,
        mode: LoraMode = "stacked",
    ):
        try:
            from peft import LoraConfig
        except ImportError as err:
            raise UserInputError("--lora_rank needs peft: pip install '.[ldm]'") from err
        if mode not in ("stacked", "isolated"):
            raise ValueError(f"mode must be 'stacked' or 'isolated', got {mode!r}")
        self.task_ids = list(task_ids)
        self.mode = mode
        self.rank = rank
        self.alpha = alpha if alpha is not None else float(rank)
        unet.requires_grad_(False)
        config = LoraConfig(
            r=rank, lora_alpha=self.alpha, init_lora_weights="gaussian", target_modules=list(target_modules)
        )
        with warnings.catch_warnings():  # peft warns that several adapters are being added: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            for task_id in self.task_ids:
                unet.add_adapter(copy.deepcopy(config), adapter_name=adapter_name(task_id))
        self._activate(unet, self.task_ids[0])

    def active_for(self, task_id: int) -> list[str]:
        """Adapter names active while training (and after) task `task_id`."""
        if self.mode == "isolated":
            return [adapter_name(task_id)]
        return [adapter_name(t) for t in self.task_ids[: self.task_ids.index(task_id) + 1]]

    def _activate(self, unet: nn.Module, task_id: int) -> None:
        unet.set_adapters(self.active_for(task_id))
        trainable = f".{adapter_name(task_id)}."
        for name, param in unet.named_parameters():
            param.requires_grad_(trainable in name)

    def before_task(self, model: nn.Module, task_id: int, apply_ema=None) -> None:
        self._activate(model.unet, task_id)
