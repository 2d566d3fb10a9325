"""The shared `main()` of every command-line tool: read `--config` files into the parser's defaults (see
`ConfigFileAction`), parse (exact flag names only: no prefixes), check every flag's bounds (utils/bounds.py), set up
logging, run, and turn bad input into one `error: …` line on stderr with exit code 2 (no traceback), and a run that
cannot go on (`RunError`: non-finite loss, disk full) into one `error: …` line with exit code 3."""

from __future__ import annotations

import argparse
import difflib
import errno
import gc
import json
import sys
from collections.abc import Callable
from typing import NoReturn

from .bounds import Bounds, check_parsed, shown
from .errors import RunError, UserInputError
from .jsonfile import json_kind, read_json
from .logging import setup_cli_logging

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
# Writes the file system refused for want of space or permission: one line, not a traceback from deep inside.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG}


# ------------------------------------------------------------------------------------------------- parsers
def show_default(action: argparse.Action) -> str | None:
    """How --help shows an option's default, or None when it does not: no default (None, SUPPRESS) or a flag
    without a value (store_true / store_false: its help says what it switches)."""
    default = action.default
    if default is None or default is argparse.SUPPRESS or action.nargs == 0:
        return None
    if isinstance(default, (list, tuple)):
        return " ".join(str(v) for v in default)
    return str(default) if default != "" else '""'


class _Formatter(argparse.HelpFormatter):
    """Every option's help ends with its default, and bounded numbers with their bounds: "(default: 0.0001)
    [> 0 and finite]". A help that places the default itself (`%(default)s`) is left as it is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = show_default(action)
        if shown is not None and "%(default)" not in text:
            text += " (default: " + shown.replace("%", "%%") + ")"
        return f"{text} [{action.type.describe()}]" if isinstance(action.type, Bounds) else text


def _formatter(prog):
    return _Formatter(prog, max_help_position=40)


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` with the shared help formatter; its sub-commands' parsers (`add_subparsers`) are
    `Parser`s too, so they show their defaults alike."""

    def __init__(self, *args, formatter_class=_formatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def new_parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    return Parser(prog=prog, description=description)


# Flags of diffusers' training scripts (train_unconditional.py, train_text_to_image.py) and common short forms, with
# the flag of ours that does the same; a hint names ours only where the parser has it.
FOREIGN_FLAGS = {
    "--num_train_epochs": "--num_epochs",
    "--train_data_dir": "--data_path",
    "--dataset_name": "--data_path",
    "--lr": "--learning_rate",
    "--report_to": "--logger",
    "--validation_prompt": "--validation_prompts",
    "--resume": "--resume_from_checkpoint",
    "--batch_size": "--train_batch_size",
}
# Where a diffusers user passes an image folder: ours reads task files, written from a folder by this command.
FROM_FOLDER = "python -m continual_diffusers.data from-folder ROOT --classes_per_task 2 --test_fraction 0.2"
_IMAGE_FOLDER_FLAGS = ("--train_data_dir",)
_UNRECOGNIZED = "unrecognized arguments: "


def unknown_flag_hint(parser: argparse.ArgumentParser, token: str) -> str | None:
    """What an unknown flag `token` ("--lr" or "--lr=0.1") most likely meant, as a phrase, or None: diffusers' name
    mapped to ours (`FOREIGN_FLAGS`), the same name with "_" for "-", or the closest flag of `parser` (difflib)."""
    name = token.split("=", 1)[0]
    known = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    ours = FOREIGN_FLAGS.get(name)
    if ours in known:
        hint = f"use {ours} for {name}"
        if name in _IMAGE_FOLDER_FLAGS:
            hint += f" (a task file; write one from an image folder with `{FROM_FOLDER}`)"
        return hint
    if name.replace("-", "_").replace("__", "--", 1) in known:
        return f"did you mean {name.replace('-', '_').replace('__', '--', 1)}?"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else None


def _with_hints(parser: argparse.ArgumentParser, message: str) -> str:
    """argparse's "unrecognized arguments: …" with a hint for each unknown flag (`unknown_flag_hint`)."""
    if not message.startswith(_UNRECOGNIZED):
        return message
    tokens = [t for t in message[len(_UNRECOGNIZED) :].split() if t.startswith("--")]
    hints = [hint for hint in (unknown_flag_hint(parser, t) for t in tokens) if hint is not None]
    return f"{message}: {'; '.join(hints)}" if hints else message


def _one_line_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """argparse's error, as one line (its default prints the whole multi-line usage first); an unknown flag gets a
    hint (`unknown_flag_hint`)."""
    parser.exit(EXIT_BAD_INPUT, f"error: {_with_hints(parser, message)} (see {parser.prog} --help)\n")


def _strict(parser: argparse.ArgumentParser) -> None:
    """One-line errors, and no abbreviated flags (`--buffer_typ` must not run as `--buffer_type`), on the parser
    and its sub-commands' parsers."""
    parser.error = _one_line_error.__get__(parser)
    parser.allow_abbrev = False
    for action in parser._actions:  # sub-commands have parsers of their own
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _strict(sub)


def _fail(code: int, message: str) -> int:
    """Close progress bars an exception left open (a bar's line has no newline yet), then print one line: control
    characters a message carries from a file or folder name are escaped (`safe_display`), so no message can forge
    a second line or send escape sequences to the terminal."""
    from tqdm import tqdm

    from .display import safe_display

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    print(f"error: {safe_display(message)}", file=sys.stderr)
    return code


def run_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], object], argv=None) -> int:
    _strict(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        for action in parser._actions:
            if isinstance(action, ConfigFileAction):
                action.load_defaults(parser, argv)
    except UserInputError as err:
        return _fail(EXIT_BAD_INPUT, str(err))
    args = parser.parse_args(argv)
    setup_cli_logging()
    try:
        check_parsed(parser, args)
        run(args)
    except UserInputError as err:
        return _fail(EXIT_BAD_INPUT, str(err))
    except RunError as err:
        return _fail(EXIT_RUN_FAILED, str(err))
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        where = f" {err.filename}" if err.filename else ""
        return _fail(EXIT_RUN_FAILED, f"cannot write{where}: {err.strerror}")
    return 0


def exit_process(code: int) -> NoReturn:
    """End an entry script's process with `code` (its `if __name__ == "__main__"` block). The objects still alive
    are frozen out of the garbage collector first: the interpreter's last collection at exit would otherwise scan
    every one of them (about 1 s after a training run: torch, diffusers, the run's objects), to free memory the
    operating system takes back anyway."""
    gc.freeze()
    sys.exit(code)


# ------------------------------------------------------------------------------------------------- --config
# The sections of a run's config.json (cli/launch.py): "args" holds the flags; the others are derived from them
# ("config": the resolved typed configuration, one object per component).
RUN_CONFIG_SECTIONS = ("args", "train_config", "config", "model")


class ConfigFileAction(argparse.Action):
    """`--config PATH` (added by `add_config_arg`). `run_main` calls `load_defaults` before parsing: the
    file's values become the parser's defaults, so every command-line flag applies on top of them. Each value goes
    through its flag's own parsing: `type` (a JSON number or string is parsed like the command-line token), choices
    and bounds, and `check_parsed` checks the final values again after parsing. Unknown keys are refused.

    The file is a run's config.json ({"args": {...}, "train_config": {...}, "config": {...}, "model": {...}}: only
    "args" is read, the other sections are derived from it) or an object of flag values keyed by destination
    ("learning_rate", not "--learning_rate"; aliases by their destination: "max_grad_norm"). Keys the parser itself
    sets without a flag (`set_defaults`, e.g. main_ldm's classifier_free_guidance, derived from --uncond_p) are
    recomputed by the run, so their values in the file are skipped. At parse time the action only records the path."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)

    def load_defaults(self, parser: argparse.ArgumentParser, argv: list[str]) -> None:
        path = self._path(argv)
        if path is None:
            return
        values = read_config_file(parser, path, self.option_strings[0])
        for action in parser._actions:
            if action.dest in values:
                action.required = False  # supplied by the file (the command line may still override it)
        parser.set_defaults(**values)

    def _path(self, argv: list[str]) -> str | None:
        """The last `--config PATH` / `--config=PATH` before a `--` (None: none, or a missing value, which the parse
        then reports)."""
        path = None
        for i, token in enumerate(argv):
            if token == "--":
                break
            for flag in self.option_strings:
                if token == flag:
                    path = argv[i + 1] if i + 1 < len(argv) else None
                elif token.startswith(flag + "="):
                    path = token[len(flag) + 1 :]
        return path


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    """`--config PATH`: flag values from a JSON file (a run's config.json, or an object of flag values) become the
    defaults, and the command-line flags apply on top; the file's values are checked like flags (types, choices,
    bounds). See `ConfigFileAction`."""
    parser.add_argument(
        "--config",
        action=ConfigFileAction,
        default=None,
        metavar="PATH",
        help="JSON file of flag values, used as defaults that the command-line flags override: a run's "
        'config.json (its "args" are read) or an object {"flag_name": value} with values as in config.json; '
        "relative paths in it are relative to the working directory, not to the file",
    )


def read_config_file(parser: argparse.ArgumentParser, path: str, flag: str = "--config") -> dict:
    """{destination: parsed value} from a config file, each value checked as its flag would be
    (`UserInputError` naming the file and the key otherwise)."""
    where = f"{flag} {path}"
    try:
        data = read_json(path)  # a regular file (not a FIFO or device) of bounded size and nesting
    except UserInputError as err:
        raise UserInputError(f"{flag} {err}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{where}: expected a JSON object of flag values, got {json_kind(data)}")
    if "args" in data:  # a run's config.json
        extra = [key for key in data if key not in RUN_CONFIG_SECTIONS]
        if extra:
            raise UserInputError(
                f'{where}: unknown key {extra[0]!r} next to "args" (a run\'s config.json has '
                f'{", ".join(RUN_CONFIG_SECTIONS)}; flag values belong in "args")'
            )
        data = data["args"]
        if not isinstance(data, dict):
            raise UserInputError(f'{where}: "args" must be a JSON object of flag values, got {json_kind(data)}')
    actions = {}
    for action in parser._actions:
        if action.option_strings and not isinstance(action, (argparse._HelpAction, ConfigFileAction)):
            actions.setdefault(action.dest, action)
    derived = set(parser._defaults) - set(actions)
    values = {}
    for key, value in data.items():
        if key in derived:
            continue
        if key not in actions:
            close = difflib.get_close_matches(key, list(actions), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (not a flag of {parser.prog})"
            raise UserInputError(f"{where}: unknown key {key!r}{hint}")
        values[key] = _file_value(actions[key], value, f"{where}: {key}")
    return values


def _file_value(action: argparse.Action, value, name: str):
    """A config-file value parsed and checked like the flag's command-line value."""
    if action.nargs == 0:  # store_true / store_false: the file says which
        if not isinstance(value, bool) or not isinstance(action.const, bool):
            raise UserInputError(f"{name} must be true or false, got {_json_text(value)}")
        return value
    if value is None:  # "unset", where the flag has that state
        if action.default is None:
            return None
        raise UserInputError(f"{name} must be set (null is not a value of {action.option_strings[0]})")
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        if not isinstance(value, list):
            raise UserInputError(f"{name} must be a list, got {json_kind(value)}")
        if (action.nargs == "+" and not value) or (isinstance(action.nargs, int) and len(value) != action.nargs):
            raise UserInputError(f"{name} has {len(value)} values, {action.option_strings[0]} takes {action.nargs}")
        return [_file_item(action, item, name) for item in value]
    return _file_item(action, value, name)


def _json_text(value) -> str:
    """A config-file value in a message, as JSON spells it, cut short (a file's string may be megabytes)."""
    text = json.dumps(value) if isinstance(value, (bool, int, float, type(None))) else shown(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _file_item(action: argparse.Action, value, name: str):
    if isinstance(value, (dict, list)):
        raise UserInputError(f"{name} must be a single value, got {json_kind(value)}")
    if action.type is None and not isinstance(value, str):
        raise UserInputError(f"{name} must be a string, got {_json_text(value)}")
    token = ("true" if value else "false") if isinstance(value, bool) else value
    token = token if isinstance(token, str) else repr(token)  # JSON numbers: the exact command-line spelling
    try:
        parsed = action.type(token) if action.type is not None else token
    except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
        raise UserInputError(f"{name}: {err}") from None
    if action.choices is not None and parsed not in action.choices:
        choices = ", ".join(repr(c) for c in action.choices)
        raise UserInputError(f"{name} must be one of {choices}, got {parsed!r}")
    if isinstance(action.type, Bounds):
        action.type.check(name, parsed)
    return parsed
