"""Opening and decoding untrusted encoded images (an image folder's files, a dataset's image bytes) with PIL.

- Only the formats an image folder may hold are tried (`FORMATS`: PNG, JPEG, BMP, GIF, WebP, TIFF, PPM/PGM/PBM):
  PIL picks a decoder from the content, not the name, and some of its other plugins hand data to external programs
  (EPS to Ghostscript) or parse rarely fuzzed formats.
- The pixel count in the header is checked against `DataLimits.image_pixels` before anything is decoded (PIL's own
  decompression-bomb check allows 179 million pixels, 0.7 GB of RGBA, and only warns from 89 million).
- A file is opened with `open_regular_file` (a FIFO or a device is refused, never read).
- Every failure is one `UserInputError` naming the image. PIL's warnings (bomb warnings, odd palettes, corrupt EXIF)
  are silenced for a whole conversion by `quiet_pil` (one `warnings.catch_warnings` per build, not per image: it is
  slow).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from contextlib import contextmanager

import numpy as np

from continual_diffusers.data.limits import DataLimits
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import NotRegularFileError, open_regular_file

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")


@contextmanager
def _pil_errors(where: str, limits: DataLimits | None = None):
    """PIL's exceptions as one UserInputError naming `where`."""
    from PIL import Image

    try:
        yield
    except UserInputError:
        raise
    except Image.DecompressionBombError as error:  # PIL's own, larger limit: reached before the header is ours
        limit = f"more than {limits.describe('image_pixels')} pixels" if limits else "too many pixels"
        raise UserInputError(f"{where}: {limit} ({' '.join(str(error).split())[:150]})") from None
    except Image.UnidentifiedImageError:
        raise UserInputError(f"{where}: unreadable image (not a {', '.join(FORMATS)} image)") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, struct.error) as error:
        # what PIL's format plugins raise on malformed input
        raise UserInputError(f"{where}: unreadable image ({' '.join(str(error).split())[:150]})") from None
    except MemoryError:
        raise UserInputError(f"{where}: not enough memory to decode it") from None


@contextmanager
def quiet_pil():
    """PIL's per-image warnings silenced (the images are checked here; a warning line would break the one-line
    error output of a refusal)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL\.")
        from PIL import Image

        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _opened(stream, where: str, limits: DataLimits):
    from PIL import Image

    with _pil_errors(where, limits):
        image = Image.open(stream, formats=FORMATS)
    width, height = image.size
    if width * height > limits.image_pixels:
        image.close()
        raise UserInputError(
            f"{where}: {width}x{height} = {width * height} pixels, more than {limits.describe('image_pixels')}"
        )
    return image


def open_image_file(path: str | os.PathLike, where: str, limits: DataLimits):
    """The image in file `path`, opened (header read, pixels not decoded); `where` names it in messages."""
    try:
        stream = open_regular_file(path)
    except NotRegularFileError as error:
        raise UserInputError(f"{where}: {error}") from None
    except OSError as error:
        raise UserInputError(f"{where}: cannot read ({error.strerror or error})") from None
    try:
        return _opened(stream, where, limits)  # the image closes the stream (Image.close, or after load())
    except BaseException:
        stream.close()
        raise


def open_image_bytes(data: bytes, where: str, limits: DataLimits):
    """The image encoded in `data`, opened (header read, pixels not decoded)."""
    return _opened(io.BytesIO(data), where, limits)


def decode(image, channels: int, resolution: int | None, where: str) -> np.ndarray:
    """An opened image → uint8 (H, W, C): decoded, converted to L or RGB, optionally resized (shorter side to
    `resolution`, bilinear with antialiasing, as `ImageTransform`) and centre-cropped to `resolution`²."""
    from PIL import Image

    with _pil_errors(where):
        image.load()
        image = image.convert("L" if channels == 1 else "RGB")
        if resolution is not None:
            width, height = image.size
            short, long = min(width, height), max(width, height)
            if short != resolution:
                new_long = int(resolution * long / short)
                size = (new_long, resolution) if height <= width else (resolution, new_long)
                image = image.resize(size, Image.BILINEAR)
            width, height = image.size
            top, left = int(round((height - resolution) / 2.0)), int(round((width - resolution) / 2.0))
            image = image.crop((left, top, left + resolution, top + resolution))
        array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array
