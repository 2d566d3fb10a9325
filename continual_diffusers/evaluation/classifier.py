"""The oracle: a small CNN trained on the real training images of all tasks, used to judge generated samples
(classifier accuracy of class-conditional samples, class histograms of unconditional ones, and its penultimate
features for Fréchet distance / KID), as in Masip et al. 2023 and CLoG.

Saved as `oracle/model.safetensors` + `oracle/config.json` (architecture, classes, resolution, test accuracy).
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import ImageTransform, TaskDataset, TaskSequence
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json_object
from ..utils.progress import progress_bar
from ..utils.seed import make_generator

# An oracle's config.json: its sizes (OracleCNN: GroupNorm(8, ·) needs widths divisible by 8).
ORACLE_SIZES = {
    "in_channels": b.CHANNELS,
    "num_classes": b.NUM_CLASSES,
    "width": b.CHANNELS,
    "feature_dim": b.CHANNELS,
    "resolution": b.RESOLUTION,
}


class OracleCNN(nn.Module):
    """conv3×3 → GroupNorm → SiLU blocks, stride-2 downsampling, global average pool → features → logits.

    Input (B, C, H, W) in [-1, 1]; `features` gives (B, feature_dim)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "width": width,
            "feature_dim": feature_dim,
        }

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        self.body = nn.Sequential(
            block(in_channels, width, 1),
            block(width, width, 1),
            block(width, 2 * width, 2),
            block(2 * width, 2 * width, 1),
            block(2 * width, feature_dim, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _all_examples(tasks: TaskSequence, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every task's images (N, C, R, R) in [-1, 1] (center crop) and class labels (N,)."""
    if tasks.label_kind != "class":
        raise UserInputError(f"the oracle classifier needs class labels, but the task file has {tasks.label_kind}")
    images, labels = [], []
    for task in tasks:
        ds = TaskDataset(task, ImageTransform(resolution, center_crop=True))
        batch = ds.batch(torch.arange(len(ds)))
        images.append(batch["images"])
        labels.append(batch["labels"])
    return torch.cat(images), torch.cat(labels)


def train_oracle(
    train: TaskSequence,
    test: TaskSequence,
    resolution: int,
    seed: int = 0,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 2e-3,
    progress: bool | None = True,
) -> tuple[OracleCNN, float]:
    """Train the oracle on all tasks' training data (random ±1-pixel shifts); return it and its test accuracy.
    `progress`: a bar over the epochs on the main process (see `sampling.generate.progress_bar`)."""
    x, y = _all_examples(train, resolution)
    num_classes = max(train.num_classes, test.num_classes)
    gen = make_generator(seed, "oracle-init")
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        model = OracleCNN(train.num_channels, num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    with progress_bar(range(epochs), desc="oracle", unit="epoch", progress=progress) as epochs_bar:
        for epoch in epochs_bar:
            order = torch.randperm(len(x), generator=make_generator(seed, "oracle-epoch", epoch))
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size]
                shift = torch.randint(-1, 2, (2,), generator=make_generator(seed, "oracle-shift", epoch, start))
                xb = torch.roll(x[idx], shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
                loss = nn.functional.cross_entropy(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    model.eval()
    x_test, y_test = _all_examples(test, resolution)
    return model, oracle_accuracy(model, x_test, y_test)


@torch.no_grad()
def predict(model: OracleCNN, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels (N,), features (N, D)) for images (N, C, H, W) in [-1, 1]."""
    preds, feats = [], []
    for start in range(0, len(images), batch_size):
        f = model.features(images[start : start + batch_size].float())
        feats.append(f)
        preds.append(model.head(f).argmax(1))
    return torch.cat(preds), torch.cat(feats)


def oracle_accuracy(model: OracleCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predict(model, images)[0] == labels).float().mean())


def save_oracle(model: OracleCNN, path: str, resolution: int, test_accuracy: float) -> str:
    os.makedirs(path, exist_ok=True)
    save_file(model.state_dict(), os.path.join(path, "model.safetensors"))
    meta = dict(model.config, resolution=resolution, test_accuracy=test_accuracy)
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
    return path


def load_oracle(path: str) -> tuple[OracleCNN, dict]:
    """(oracle, its config.json) from an oracle folder, checked before anything is allocated: the config's sizes
    within bounds, and the weights file's header holding exactly the tensors of the CNN the config describes (an
    empty skeleton on the meta device), so a config claiming a wide CNN over a small file is refused, not built.
    `UserInputError` otherwise."""
    from ..models.weights import check_component_files, check_weights_fit, safetensors_shapes

    config_file = os.path.join(path, "config.json")
    if not os.path.lexists(config_file):
        raise UserInputError(
            f"{path}: not an oracle folder (no config.json); train one with "
            "`python -m continual_diffusers.evaluation train-oracle`"
        )
    check_component_files(path)
    meta = read_json_object(config_file)
    for key, bounds in ORACLE_SIZES.items():
        bounds.check(f"{config_file}: {key}", meta.get(key))
    if meta["width"] % 8 or meta["feature_dim"] % 8:
        raise UserInputError(f"{config_file}: width and feature_dim must be multiples of 8")
    sizes = (meta["in_channels"], meta["num_classes"], meta["width"], meta["feature_dim"])
    with torch.device("meta"):
        skeleton = OracleCNN(*sizes)
    check_weights_fit(skeleton, safetensors_shapes(path, "model"), path)
    model = OracleCNN(*sizes)
    model.load_state_dict(load_file(os.path.join(path, "model.safetensors")))
    return model.eval(), meta
