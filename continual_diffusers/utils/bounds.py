"""The bounds of every number a user types or a file supplies: CLI flags, exported configs, checkpoint state and the
sampling options of the library. One `Bounds` per kind of number, defined here once:

- as an argparse `type=` it parses the string (`int` / `float`); `check_parsed(parser, args)` (run by every entry
  point, see utils/entrypoint.py) then checks each parsed flag, so the message names the flag:
  `--resolution must be >= 1 and <= 4096, got 65536`;
- `bounds.check(name, value)` is the same check for library options and files (`UserInputError`).

Floats must always be finite. Sizes have upper bounds far above any sensible run but low enough that a typo
cannot allocate the machine away.
"""

from __future__ import annotations

import argparse
import math
import reprlib
import sys
from dataclasses import dataclass

from .errors import UserInputError


@dataclass(frozen=True)
class Bounds:
    kind: type = int  # int or float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded
    hi_open: bool = False

    def __call__(self, text: str):
        """argparse `type=`: parse only (the range is checked after parsing, by `check_parsed`)."""
        try:
            return self.kind(text)
        except ValueError:
            shown = repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"
            raise argparse.ArgumentTypeError(f"invalid {self.kind.__name__} value: {shown}") from None

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.kind is float and isinstance(value, int) and abs(value) > sys.float_info.max:
            return False  # no float is that large (and `float(value)` would raise OverflowError)
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def describe(self) -> str:
        """e.g. ">= 1 and <= 4096" (ints), "in [0, 1)" (floats), "> 0 and finite"."""
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        if self.kind is float and lo and hi:
            return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        parts = [p for p in (lo, hi) if p]
        if self.kind is int:
            return " and ".join(["an integer", *parts] if not parts else parts)
        return " and ".join([*parts, "finite"])

    def check(self, name: str, value):
        """`value`, or `UserInputError("<name> must be …, got …")`."""
        if not self.contains(value):
            raise UserInputError(f"{name} must be {self.describe()}, got {shown(value)}")
        return value


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 3, 60, 60, 6, 4


def shown(value) -> str:
    """`value` as a message shows it: numbers as typed (an integer of more than 30 digits by its length), anything
    else as a short repr that stays one line however long or deeply nested the value is."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value) if value.bit_length() < 100 else ""
        return text if text else f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, float):
        return _num(value)
    return _SHORT.repr(value).replace("\n", "\\n")


def check_parsed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check every parsed flag whose `type=` is a `Bounds` (lists element by element; None = unset), and the flags
    of the sub-command that was chosen. Raises `UserInputError` naming the flag."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None) if action.dest != argparse.SUPPRESS else None
            if chosen in action.choices:
                check_parsed(action.choices[chosen], args)
        elif isinstance(action.type, Bounds):
            value = getattr(args, action.dest, None)
            name = _flag_name(action)
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    action.type.check(name, item)


def _flag_name(action: argparse.Action) -> str:
    """The flag named after the destination (`--max_grad_norm` rather than its alias `--clip_grad_norm`)."""
    preferred = "--" + action.dest
    return preferred if preferred in action.option_strings else (action.option_strings or [action.dest])[0]


# ------------------------------------------------------------------------------------------------- the bounds
# counts and sizes
SEED = Bounds(int, 0, 2**32 - 1)  # numpy's seed range
RESOLUTION = Bounds(int, 1, 4096)  # pixels per side
CHANNELS = Bounds(int, 1, 4096)  # UNet widths, norm groups, slot width (Stable Diffusion's widest is 1280)
NUM_LEVELS = Bounds(int, 1, 8)  # UNet resolution levels (len(block_out_channels))
LAYERS_PER_BLOCK = Bounds(int, 1, 16)
NUM_CLASSES = Bounds(int, 1, 100_000)
CLASS_ID = Bounds(int, 0, NUM_CLASSES.hi - 1)
TIMESTEPS = Bounds(int, 1, 100_000)  # training timesteps T; inference steps (and at most T)
BATCH_SIZE = Bounds(int, 1, 65_536)
GRAD_ACCUMULATION = Bounds(int, 1, 4096)
STEPS = Bounds(int, 1, 10**9)  # optimizer steps, epochs
STEPS_OR_ZERO = Bounds(int, 0, 10**9)  # warm-up steps, checkpoint interval (0: off)
CHECKPOINT_LIMIT = Bounds(int, 1, 10**6)
IMAGES_PER_ROW = Bounds(int, 1, 10_000)  # samples per class / prompt
EVAL_SAMPLES = Bounds(int, 2, 100_000)  # generated images per task and evaluation
BUFFER_SIZE = Bounds(int, 0, 10**8)  # replay slots (images are kept as uint8)
POOL_SIZE = Bounds(int, 0, 10**6)  # generative-replay pool
EWC_SAMPLES = Bounds(int, 1, 10**6)
INNER_STEPS = Bounds(int, 1, 1000)  # MCMC steps per level, leapfrog steps, Fisher timesteps per sample
NUM_SLOTS = Bounds(int, 1, 64)
SLOT_ITERATIONS = Bounds(int, 1, 100)
INDEX = Bounds(int, 0, 10**9)  # an image index into a task
TASK_ID = Bounds(int, 1, 10**9)
LORA_RANK = Bounds(int, 0, 1024)
# real numbers (always finite)
POSITIVE = Bounds(float, 0, lo_open=True)
NON_NEGATIVE = Bounds(float, 0)
PROBABILITY = Bounds(float, 0, 1, hi_open=True)  # [0, 1): dropout, replay fraction, Adam betas
OPEN_UNIT = Bounds(float, 0, 1, lo_open=True, hi_open=True)
DECAY = Bounds(float, 0, 1, lo_open=True)  # (0, 1]
UNIT = Bounds(float, 0, 1)  # [0, 1]
FINITE = Bounds(float)  # composition weights (negative weights negate a concept)
