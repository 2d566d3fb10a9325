"""Loading one component of a model folder (a UNet, VAE, slot encoder or text encoder, a tokenizer) from a local
folder or a Hub id, as untrusted input.

A local folder is checked before diffusers or transformers open any of its files (models/weights.py: regular files
only, bounded JSON, safetensors weights), its config is checked on an empty skeleton (models/config_check.py) and
the weights' headers must match that skeleton; only then is the model built, from safetensors only
(`use_safetensors=True`: a pickled `.bin` is never unpickled, not even with torch's `weights_only`), and its weights
must be finite. From a Hub id the config is fetched and checked the same way before the weights are downloaded.
Whatever the library still refuses becomes one `UserInputError` line naming the folder.
"""

from __future__ import annotations

import os

import torch

from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json_object
from ..utils.logging import quiet_libraries
from .config_check import check_model_config
from .weights import check_component_files, check_weights_fit, safetensors_shapes


def load_model(cls, root: str, sub: str, what: str, sizes: dict, variant: str | None = None, revision=None, fits=None):
    """`cls.from_pretrained(root, subfolder=sub)` of a diffusers or transformers model class, checked (module
    docstring); `what` names it in messages ("the VAE"), `sizes` bounds its config (config_check), `fits(config,
    where)`: what else the config must satisfy (a UNet's sample size, ...)."""
    folder = os.path.join(root, sub) if sub else root
    if os.path.isdir(root):
        config, where = check_local_model(cls, folder, what, sizes, variant), os.path.join(folder, "config.json")
    else:
        config, where = remote_config(cls, root, sub, revision, what), f"{folder}/config.json"
        check_model_config(cls, config, where, sizes)
    if fits is not None:
        fits(config, where)
    kwargs = {"subfolder": sub, "use_safetensors": True, "variant": variant, "revision": revision}
    try:
        with quiet_libraries():
            module = cls.from_pretrained(root, **kwargs)
    except Exception as err:  # the library's refusal of a file we passed on: one line, not its traceback
        raise UserInputError(f"{folder}: cannot load {what} ({_first_line(err)})") from None
    check_finite(module, folder)
    return module


def check_local_model(cls, folder: str, what: str, sizes: dict, variant: str | None = None) -> dict:
    """The checks of a local component folder before anything is built from it; returns its config."""
    config = check_local_config(folder, what=what)
    file = os.path.join(folder, "config.json")
    skeleton = check_model_config(cls, config, file, sizes)
    stem = "diffusion_pytorch_model" if hasattr(cls, "from_config") else "model"  # diffusers / transformers
    check_weights_fit(skeleton, safetensors_shapes(folder, stem, variant), folder)
    return config


def check_local_config(folder: str, name: str = "config.json", what: str = "it") -> dict:
    """The JSON object in `folder`/`name`, once the folder's files are checked (models/weights.py)."""
    check_component_files(folder)
    file = os.path.join(folder, name)
    if not os.path.lexists(file):
        raise UserInputError(f"{folder}: cannot load {what} (no {name})")
    return read_json_object(file)


def load_tokenizer(cls, root: str, sub: str, revision=None):
    """`cls.from_pretrained(root, subfolder=sub)` of a tokenizer class, its local files checked first."""
    folder = os.path.join(root, sub) if sub else root
    if os.path.isdir(root):
        check_component_files(folder)
    try:
        with quiet_libraries():
            return cls.from_pretrained(root, subfolder=sub, revision=revision)
    except Exception as err:  # tokenizers raises plain Exception for a tokenizer.json it cannot read
        raise UserInputError(f"{folder}: cannot load the tokenizer ({_first_line(err)})") from None


def check_finite(module: torch.nn.Module, where: str) -> None:
    """NaN or infinite weights would sample black images without a word."""
    for name, param in module.named_parameters():
        if not bool(torch.isfinite(param).all()):
            raise UserInputError(f"{where}: weight {name} holds NaN or infinite values")


def remote_config(cls, name: str, sub: str, revision, what: str) -> dict:
    """The config dict of component `sub` of the Hub repo `name`, through the library's own config loader."""
    try:
        with quiet_libraries():
            if hasattr(cls, "load_config"):
                return dict(cls.load_config(name, subfolder=sub, revision=revision))
            return cls.config_class.get_config_dict(name, subfolder=sub, revision=revision)[0]
    except Exception as err:  # offline, unknown repo, no access, a config that is not JSON
        raise UserInputError(f"{name}/{sub}: cannot load the config of {what} ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]
