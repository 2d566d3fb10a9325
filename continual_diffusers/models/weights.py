"""The files of a model component folder (an export's unet/, vae/, text_encoder/, tokenizer/, ...; a Stable-Diffusion
folder's), checked before diffusers or transformers open any of them:

- `check_component_files`: every entry is a regular file or a folder (a FIFO would block the library's `open`, a
  device such as /dev/zero would be read forever), every `.json` file reads as bounded JSON (utils/jsonfile.py), every
  other text file the libraries read whole (vocabularies, merges) is within the same size cap;
- `safetensors_shapes`: the weights the library would load, from the safetensors headers only (a single file or
  the shards of its `.safetensors.index.json`); pickled weights (`.bin`, `.pt`, `.ckpt`) are never loaded, so a
  folder with only those is refused;
- `check_weights_fit`: those weights must cover every parameter and buffer of the model's empty skeleton with its
  shape, so a config that does not describe its weights (a text encoder of another width, an oracle config claiming
  a width of 2048 over a small file) is refused before the model is built and its missing weights initialised.
"""

from __future__ import annotations

import os
import stat

from ..utils.errors import UserInputError
from ..utils.files import NotRegularFileError, file_kind, open_regular_file
from ..utils.jsonfile import max_json_bytes, read_json, read_json_object

TEXT_SUFFIXES = (".txt", ".model", ".jinja", ".tiktoken")  # tokenizer files the libraries read whole
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_component_files(folder: str) -> None:
    """Refuse (`UserInputError`) a component folder holding anything a library could hang or run out of memory on
    (see the module docstring). A missing folder is left to the loader's own message."""
    try:
        entries = list(os.scandir(folder))
    except NotADirectoryError:
        raise UserInputError(f"{folder}: not a folder") from None
    except FileNotFoundError:
        return
    except OSError as err:
        raise UserInputError(f"{folder}: cannot list the folder ({err.strerror or err})") from None
    for entry in entries:
        path = os.path.join(folder, entry.name)
        try:
            mode = os.stat(path).st_mode  # follows links: a link to a FIFO is a FIFO
        except OSError as err:
            raise UserInputError(f"{path}: cannot read ({err.strerror or err})") from None
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise UserInputError(f"{path}: {file_kind(mode)}, not a regular file")
        if entry.name.endswith(".json"):
            read_json(path)
        elif entry.name.endswith(TEXT_SUFFIXES):
            _check_regular(path, max_json_bytes())


def safetensors_shapes(folder: str, stem: str, variant: str | None = None) -> dict[str, tuple[int, ...]]:
    """{weight name: shape} of `folder`/`stem`[.`variant`].safetensors, or of the shards its
    `.safetensors.index.json` lists, from the headers (no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    name = f"{stem}.{variant}.safetensors" if variant else f"{stem}.safetensors"
    single, index = os.path.join(folder, name), os.path.join(folder, name + ".index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        files = _shards(index, folder)
    else:
        pickled = sorted(e for e in os.listdir(folder) if e.endswith(PICKLE_SUFFIXES)) if os.path.isdir(folder) else []
        found = f" (found {pickled[0]}: pickled weights are never loaded; save them as safetensors)" if pickled else ""
        raise UserInputError(f"{folder}: no {name} weights{found}")
    shapes = {}
    for file in files:
        try:
            _check_regular(file)
            with safe_open(file, framework="pt") as fh:
                shapes.update({key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()})
        except (OSError, SafetensorError, ValueError) as err:
            if isinstance(err, UserInputError):
                raise
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise UserInputError(f"{file}: not a readable safetensors file ({reason[:200]})") from None
    return shapes


def _shards(index: str, folder: str) -> list[str]:
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise UserInputError(f"{index}: weight_map must map weight names to shard file names")
    names = sorted(set(weight_map.values()))
    bad = [n for n in names if os.path.basename(n) != n or n in (".", "..") or not n.endswith(".safetensors")]
    if bad:
        raise UserInputError(f"{index}: shard {bad[0][:100]!r} is not a .safetensors file of this folder")
    return [os.path.join(folder, n) for n in names]


def check_weights_fit(skeleton, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    """Every tensor of `skeleton`'s state dict is in `shapes` with its shape (extra weights, e.g. buffers that
    older library versions saved, are ignored by the loaders and here)."""
    want = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    missing = [name for name in want if name not in shapes]
    if missing:
        raise UserInputError(
            f"{where}: {len(missing)} weights of the model its config describes are missing from the weights file "
            f"(e.g. {missing[0]}); the config and the weights do not belong together"
        )
    differ = [name for name in want if shapes[name] != want[name]]
    if differ:
        name = differ[0]
        raise UserInputError(
            f"{where}: weight {name} has shape {list(shapes[name])} but the config describes {list(want[name])}; "
            "the config and the weights do not belong together"
        )


def _check_regular(path: str, max_bytes: int | None = None) -> None:
    """`path` is a regular file of at most `max_bytes` (a library that opens it by name would block on a FIFO)."""
    try:
        open_regular_file(path, max_bytes).close()
    except NotRegularFileError as err:
        raise UserInputError(f"{path}: {err}") from None
