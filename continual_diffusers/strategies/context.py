"""What a strategy is built from: `StrategyContext`, what the run offers it (tasks, model, conditioning, schedule,
seed, ...), and `StrategyConfig`, its options. Each strategy module declares a `StrategyConfig` dataclass next to
the strategy (its options as `utils.options.option` fields, which are also its command-line flags), and the strategy
class names it (`config = ReplayConfig`). The CLI finds every registered strategy's config through `STRATEGIES`
(strategies/__init__.py), so a new strategy is its file, its config and one registry line.

A config validates its own values on construction (`ReplayConfig(buffer_size=-1)` is refused with the message
`--buffer_size -1` gets); `check(context)` then checks what depends on the rest of the run (the data, the other
enabled strategies), and `build(context)` makes the strategy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..utils.errors import UserInputError
from ..utils.options import Checked, flag_defaults, flag_fields


@dataclass(frozen=True)
class StrategyContext:
    """What strategies may need from the rest of the run.

    Attributes:
        tasks: the training `TaskSequence` (task sizes, label kind).
        enabled: name → config of every enabled strategy (a strategy may depend on another one).
        model: the denoiser being trained (LoRA injects its adapters into its UNet).
        transform: the training `ImageTransform` (buffer replay applies it to stored images).
        conditioning, train_scheduler: the run's conditioning and noise schedule (generative replay samples).
        seed: the run seed; guidance_scale: CFG scale for models trained with CFG (1.0 otherwise);
        latent: the model works on VAE latents; use_ema: EMA weights exist; mixed_precision: "no", "fp16", "bf16".
    """

    tasks: Any
    enabled: dict = field(default_factory=dict)
    model: Any = None
    transform: Any = None
    conditioning: Any = None
    train_scheduler: Any = None
    seed: int = 0
    guidance_scale: float = 1.0
    latent: bool = False
    use_ema: bool = False
    mixed_precision: str = "no"


class StrategyConfig(Checked):
    """Base of a strategy's config dataclass. Subclasses set `name` (the registry key), optionally `enabled_by` (a
    field whose set value enables the strategy without `--strategy NAME`, e.g. replay's `buffer_type`) and
    `enable_hint` (how the owned-option message says to enable it), and override `build` (and `check`)."""

    name: ClassVar[str]
    enabled_by: ClassVar[str | None] = None
    enable_hint: ClassVar[str] = ""

    @classmethod
    def enabled_in(cls, values: dict) -> bool:
        """Does a set of flag values enable the strategy by its own flag (not `--strategy`)?"""
        return cls.enabled_by is not None and values.get(cls.enabled_by) not in (None, False)

    @classmethod
    def check_owned(cls, values: dict) -> None:
        """The strategy is off: none of its options may be set (they would silently do nothing)."""
        for name, default in flag_defaults(cls).items():
            if name in values and values[name] != default:
                raise UserInputError(
                    f"--{name} is set but {cls.name} is off (enable it with --strategy {cls.name}{cls.enable_hint})"
                )

    def check(self, context: StrategyContext) -> None:
        """Checks that depend on the rest of the run (`UserInputError`)."""

    def build(self, context: StrategyContext):
        raise NotImplementedError


def option_names(config_class) -> list[str]:
    """The flag destinations a strategy config declares."""
    return [f.name for f in flag_fields(config_class)]
