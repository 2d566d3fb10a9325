"""Conditioning kinds, each a plug-in (`base.py` says what a kind owns):

- `Unconditional` ("none"): no kwargs. Labelled data trains an unconditional model fine: labels are ignored.
- `ClassConditioning` ("class"): `class_labels=` (B,) long; the CFG null label is the reserved index `num_classes`.
- `TextConditioning` ("text"): `encoder_hidden_states=` (B, L, D) from a frozen CLIP text encoder; the null
  condition is the empty prompt "".
- `SlotConditioning` ("slots"): an image's own K slots (Slot Attention, `models/slots.py`); the null condition is a
  learned null slot set. Training encodes the batch's *images* (`training_inputs`), sampling takes slot sets.

`CONDITIONINGS` maps each name (`--conditioning`, "conditioning" in continual_diffusers.json) to its class. A new
kind is one file with a `Conditioning` subclass and one line here; `--conditioning`, exports, loading, the pipeline
and the samplers then take it, and nothing else names it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...utils import bounds as b
from ...utils.errors import UserInputError
from .base import BuildContext, Conditioning, ConditionParams, check_unet_takes
from .class_label import ClassConditioning, ClassParams
from .slot import SlotConditioning, SlotConfig, SlotParams
from .text import TextConditioning, check_tokenizer_fits, load_text_encoder
from .unconditional import Unconditional

CONDITIONINGS: dict[str, type[Conditioning]] = {
    "none": Unconditional,
    "class": ClassConditioning,
    "text": TextConditioning,
    "slots": SlotConditioning,
}


def conditioning_class(name, where: str = "conditioning") -> type[Conditioning]:
    """The registered kind called `name` (`UserInputError` naming `where` otherwise)."""
    if not isinstance(name, str) or name not in CONDITIONINGS:
        raise UserInputError(f"{where} must be one of {list(CONDITIONINGS)}, got {b.shown(name)}")
    return CONDITIONINGS[name]


class RegisteredKinds(Sequence):
    """The registry's names, read at each use (a flag's `choices`: a kind registered after import is offered
    too), after `first` (e.g. "auto")."""

    def __init__(self, *first: str):
        self.first = first

    def _names(self) -> list[str]:
        return [*self.first, *CONDITIONINGS]

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(self._names())


__all__ = [
    "CONDITIONINGS",
    "BuildContext",
    "ClassConditioning",
    "ClassParams",
    "ConditionParams",
    "Conditioning",
    "RegisteredKinds",
    "SlotConditioning",
    "SlotConfig",
    "SlotParams",
    "TextConditioning",
    "Unconditional",
    "check_tokenizer_fits",
    "check_unet_takes",
    "conditioning_class",
    "load_text_encoder",
]
