"""Typed configurations that generate their command-line flags: a dataclass field declared with `option(...)` is
one flag (name = the field name, aliases, help, default, choices, bounds), checked the same way whether it comes
from the command line, a `--config` file or Python.

    @options_group("Replay", "experience replay from a buffer of past tasks' samples")
    @dataclass
    class ReplayConfig:
        buffer_size: int = option(1000, bounds=b.BUFFER_SIZE, help="total replay slots")

        def __post_init__(self):
            check_options(self)  # ReplayConfig(buffer_size=-1): "ReplayConfig.buffer_size must be >= 0 …, got -1"

- `add_options(parser, ReplayConfig)` adds the class's flags as one argument group;
- `from_args(ReplayConfig, args)` builds (and so validates) the config from parsed flags;
- `flag_values(config)` is the inverse: {flag destination: value}, what a run's config.json records.

Why our own ~150 lines and not jsonargparse / tyro / simple-parsing / hydra: our flag names (`--buffer_size`, with
upstream aliases such as `--clip_grad_norm`), their one-line `error: …` messages, the refusal of abbreviated flags
and the `--config` file semantics (utils/entrypoint.py) are a public interface that users' scripts rely on; those
libraries derive names, nesting and messages their own way (tyro: `--replay.buffer-size`, jsonargparse: its own
error texts and config precedence), so keeping ours would mean fighting each of them, plus a dependency. Here the
field metadata maps one to one onto `argparse.add_argument`, and the bounds are the `utils/bounds.py` ones the
CLI already checked with.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from .bounds import Bounds
from .errors import UserInputError

_KEY = "cli"  # the field-metadata key that makes a field a flag


@dataclasses.dataclass(frozen=True)
class Flag:
    """How a config field is checked and, with `flag=True`, a flag. `flags`: the option strings (default
    `--<field>`; aliases after it, or before it where upstream's name is listed first); `parse`: argparse `type=`
    when it is not the bounds' parser; `optional`: None is allowed although the default is not None; `unset_none`:
    the flag's default is None ("not given", which the CLI may need to tell from the default) and a config built
    from the flags then gets the field's default."""

    help: str = ""
    flag: bool = True
    optional: bool = False
    unset_none: bool = False
    bounds: Bounds | None = None
    choices: Sequence | None = None
    flags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    nargs: str | None = None
    const: Any = None
    parse: Callable | None = None
    required: bool = False


def option(default: Any = dataclasses.MISSING, *, help: str, **flag) -> Any:
    """A dataclass field that is also a command-line flag (see `Flag` for the keywords). A list default is copied
    for every instance; no default makes the flag required."""
    return checked(default, help=help, flag=True, **flag)


def checked(default: Any = dataclasses.MISSING, **spec) -> Any:
    """A dataclass field checked like a flag (bounds, choices) that is not a flag itself (`flag=False`), e.g. a
    value the CLI derives from other flags."""
    spec = Flag(**{"flag": False, **spec, "required": default is dataclasses.MISSING})
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={_KEY: spec})
    return dataclasses.field(default=default, metadata={_KEY: spec})


def options_group(title: str, description: str | None = None):
    """Class decorator: the argument group (title, description) the class's flags are listed under in --help."""

    def mark(cls):
        cls.__options_group__ = (title, description)
        return cls

    return mark


def flag_fields(cls) -> list[dataclasses.Field]:
    return [f for f in _checked_fields(cls) if _spec(f).flag]


def _checked_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if _KEY in f.metadata]


def _spec(field: dataclasses.Field) -> Flag:
    return field.metadata[_KEY]


def help_of(cls, name: str) -> str:
    """The help text of `cls`'s flag `name` (an entry point may extend it)."""
    return _spec(cls.__dataclass_fields__[name]).help


def default_of(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def flag_defaults(cls) -> dict:
    """{destination: default} of the class's flags, as the parser has them."""
    return {f.name: None if _spec(f).unset_none else default_of(f) for f in flag_fields(cls)}


# ------------------------------------------------------------------------------------------------ → argparse
def add_options(parser: argparse.ArgumentParser, cls, defaults: dict | None = None, helps: dict | None = None):
    """Add `cls`'s flags to `parser` as one argument group (`options_group`); returns the group. `defaults` and
    `helps` replace a flag's default / help for this parser only (an entry point where the flag means less)."""
    title, description = getattr(cls, "__options_group__", (cls.__name__, None))
    group = parser.add_argument_group(title, description)
    for field in flag_fields(cls):
        kwargs = _argparse_kwargs(field)
        if field.name in (defaults or {}):
            kwargs["default"] = defaults[field.name]
        kwargs["help"] = (helps or {}).get(field.name, kwargs["help"])
        spec = _spec(field)
        group.add_argument(*(spec.flags or (f"--{field.name}", *spec.aliases)), dest=field.name, **kwargs)
    return group


def _argparse_kwargs(field: dataclasses.Field) -> dict:
    spec, default = _spec(field), default_of(field)
    if spec.required:
        return {"required": True, "help": spec.help}
    if isinstance(default, bool) and spec.parse is None:  # a switch: the flag sets the other value
        return {"action": "store_false" if default else "store_true", "help": spec.help}
    kwargs = {"default": None if spec.unset_none else default, "help": spec.help}
    parse = spec.parse or spec.bounds
    if parse is not None:
        kwargs["type"] = parse
    if spec.choices is not None:
        kwargs["choices"] = list(spec.choices)
    if spec.nargs is not None:
        kwargs["nargs"] = spec.nargs
    if spec.nargs == "?":
        kwargs["const"] = spec.const
    return kwargs


def from_args(cls, args: argparse.Namespace, **extra):
    """`cls` built from the parsed flags it declares (validated by its `__post_init__`); `extra`: its other fields."""
    values = {f.name: getattr(args, f.name) for f in flag_fields(cls) if hasattr(args, f.name)}
    unset = [f.name for f in flag_fields(cls) if _spec(f).unset_none and values.get(f.name) is None]
    return cls(**{k: v for k, v in values.items() if k not in unset}, **extra)


def flag_values(config) -> dict:
    """{destination: value} of a config's flags (a copy: lists are new lists)."""
    return {f.name: _plain(getattr(config, f.name)) for f in flag_fields(type(config))}


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


# ------------------------------------------------------------------------------------------------ validation
class Checked:
    """Base of a config dataclass that validates itself on construction (`check_options`); subclasses that check
    more call `super().__post_init__()` first."""

    def __post_init__(self) -> None:
        check_options(self)


def check_options(config) -> None:
    """Every checked field of `config` within its bounds and choices: `UserInputError`, one line naming the field
    (`ReplayConfig.buffer_size must be >= 0 and <= 100000000, got -1`: the command line's message for
    `--buffer_size -1`, with the field named as Python spells it). A field whose default is None may be None
    (unset); list fields are checked item by item."""
    for field in _checked_fields(type(config)):
        spec, value, name = _spec(field), getattr(config, field.name), f"{type(config).__name__}.{field.name}"
        if value is None and (spec.optional or (default_of(field) is None and not spec.required)):
            continue
        listed = spec.nargs in ("+", "*")
        if listed and (not isinstance(value, (list, tuple)) or (spec.nargs == "+" and not value)):
            raise UserInputError(f"{name} must be a non-empty list, got {value!r}")
        for item in value if listed else [value]:
            _check_item(field, spec, item, name)


def _check_item(field: dataclasses.Field, spec: Flag, item, name: str) -> None:
    default = default_of(field)
    if spec.bounds is not None:
        spec.bounds.check(name, item)
    elif spec.choices is not None and item not in spec.choices:
        raise UserInputError(f"{name} must be one of {list(spec.choices)}, got {item!r}")
    elif isinstance(default, bool) and not isinstance(item, bool):
        raise UserInputError(f"{name} must be true or false, got {item!r}")
    elif isinstance(default, str) and not isinstance(item, str):
        raise UserInputError(f"{name} must be a string, got {item!r}")


def parse_bool(value: str) -> bool:
    """argparse `type=` of an optional-value switch (`--flag`, `--flag true`, `--flag no`)."""
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")
