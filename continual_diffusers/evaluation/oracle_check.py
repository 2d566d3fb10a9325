"""An oracle folder a user points to (`--oracle_path`, or one an earlier run trained), checked before it judges
anything: a sane config, weights that load and are finite, and the test tasks' channels and classes."""

from __future__ import annotations

import os

from ..data import TaskSequence
from ..utils import bounds as b
from ..utils.errors import UserInputError

# An oracle's config.json: its sizes (OracleCNN: GroupNorm(8, ·) needs widths divisible by 8).
ORACLE_SIZES = {
    "in_channels": b.CHANNELS,
    "num_classes": b.NUM_CLASSES,
    "width": b.CHANNELS,
    "feature_dim": b.CHANNELS,
}


def load_checked_oracle(path: str, test: TaskSequence):
    """(oracle, its config) from an oracle folder, refused (`UserInputError`) unless its config is sane, its
    weights load and are finite, and it classifies images like the test tasks' (channels, classes)."""
    import torch

    from ..models.loading import read_json_object
    from .classifier import load_oracle

    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise UserInputError(
            f"{path}: not an oracle folder (no config.json); train one with "
            "`python -m continual_diffusers.evaluation train-oracle`"
        )
    meta = read_json_object(file)
    for key, bounds in {**ORACLE_SIZES, "resolution": b.RESOLUTION}.items():
        bounds.check(f"{file}: {key}", meta.get(key))
    if meta["width"] % 8 or meta["feature_dim"] % 8:
        raise UserInputError(f"{file}: width and feature_dim must be multiples of 8")
    try:
        oracle, meta = load_oracle(path)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        reason = " ".join(line.strip() for line in str(err).splitlines()[:2])  # torch: "Error(s) in …:\n\tsize …"
        raise UserInputError(f"{path}: the oracle does not load ({reason})") from err
    if not all(bool(torch.isfinite(p).all()) for p in oracle.parameters()):
        raise UserInputError(f"{path}/model.safetensors: the oracle's weights hold NaN or infinite values")
    if meta["in_channels"] != test.num_channels or meta["num_classes"] < test.num_classes:
        raise UserInputError(
            f"{path}: the oracle takes {meta['in_channels']}-channel images of {meta['num_classes']} classes, the "
            f"test tasks have {test.num_channels} channel(s) and {test.num_classes} classes"
        )
    return oracle, meta
