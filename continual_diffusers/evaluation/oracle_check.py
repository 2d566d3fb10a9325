"""An oracle folder a user points to (`--oracle_path`, or one an earlier run trained), checked before it judges
anything: a sane config, weights that load and are finite, and the test tasks' channels and classes."""

from __future__ import annotations

from ..data import TaskSequence
from ..utils.errors import UserInputError


def load_checked_oracle(path: str, test: TaskSequence):
    """(oracle, its config) from an oracle folder, refused (`UserInputError`) unless its config is sane and fits
    its weights (`load_oracle`), the weights load and are finite, and it classifies images like the test tasks'
    (channels, classes)."""
    import torch

    from .classifier import load_oracle

    try:
        oracle, meta = load_oracle(path)
    except UserInputError:
        raise
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
