"""The stated limits of data ingestion (`from-folder`, `from-hf` and `build_task_files`), each a module constant, an
environment variable and a field of `DataLimits` (the function argument that overrides both).

They bound what a small hostile input could otherwise make the converter do: decode a 13000x13000 image from a
660 KB PNG, expand one stored value into millions of rows, pad every caption to one 500,000-character caption, or
write a dataset far larger than its source. The task-file cap (`npz.MAX_TASK_FILE_BYTES`) still bounds each `.npz`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import limit_from_env

MAX_IMAGE_PIXELS = 4096 * 4096  # width x height of one image, read from its header before it is decoded
MAX_IMAGES = 2_000_000  # rows of a dataset / images of a folder (ImageNet-1k: 1.28 M; CIFAR-10: 60 k)
MAX_CAPTION_CHARS = 1000  # characters of one caption or class name (CLIP reads 77 tokens)
MAX_DATASET_BYTES = 16 * 2**30  # Arrow/parquet data read into memory; images + labels written by one build
MAX_FOLDER_DEPTH = 32  # folders below a class folder
MAX_DATA_FILES = 10_000  # .parquet / .arrow files of one dataset

ENV = {
    "image_pixels": "CONTINUAL_DIFFUSERS_MAX_IMAGE_PIXELS",
    "images": "CONTINUAL_DIFFUSERS_MAX_IMAGES",
    "caption_chars": "CONTINUAL_DIFFUSERS_MAX_CAPTION_CHARS",
    "dataset_bytes": "CONTINUAL_DIFFUSERS_MAX_DATASET_BYTES",
}


@dataclass(frozen=True)
class DataLimits:
    """Limits of one conversion; `DataLimits.from_env()` reads the environment variables in `ENV`.

    Attributes:
        image_pixels: most pixels (width x height) of one image.
        images: most rows of a dataset, or images of an image folder.
        caption_chars: most characters of one caption or class name.
        dataset_bytes: most bytes of Arrow/parquet data read into memory, and of images and labels one build
            writes (all splits; each `.npz` is also bound by the task-file cap).
    """

    image_pixels: int = MAX_IMAGE_PIXELS
    images: int = MAX_IMAGES
    caption_chars: int = MAX_CAPTION_CHARS
    dataset_bytes: int = MAX_DATASET_BYTES

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserInputError(f"DataLimits.{item.name} must be an int >= 1, got {value!r}")

    @classmethod
    def from_env(cls) -> DataLimits:
        """The defaults, each replaced by its environment variable (a number) if set."""
        return cls(**{name: limit_from_env(variable, getattr(cls, name)) for name, variable in ENV.items()})

    def describe(self, name: str) -> str:
        """'the limit of N ($VARIABLE)' for a message about the limit `name`."""
        return f"the limit of {getattr(self, name)} (${ENV[name]})"
