"""Decode any image a phone or camera produces into an upright RGB picture.

Pure Pillow, with pillow-heif for HEIC/HEIF when it is installed, so the web
process can use it for validation without importing torch.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ml.errors import ImageDecodeError

logger = logging.getLogger(__name__)

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # HEIC support is optional for the ml package alone.
    pillow_heif = None

ImageSource = bytes | str | Path | Image.Image


def open_image(source: ImageSource, draft_size: int | None = None) -> Image.Image:
    """Decode `source` into an RGB image with its EXIF orientation applied.

    Animated images give their first frame. Transparency is composited on
    white and 16-bit or CMYK data is converted to 8-bit RGB. With
    `draft_size`, a JPEG is decoded at a reduced scale that still covers
    `draft_size` pixels on its short side, which makes 24-megapixel photos
    cheap to classify.
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        image = _open(source)

    try:
        if getattr(image, "is_animated", False):
            image.seek(0)
        if draft_size and image.format == "JPEG":
            image.draft("RGB", _draft_request(image.size, draft_size))
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"image data is truncated or corrupt: {error}") from error


def _open(source: bytes | str | Path) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageDecodeError("the file is empty (0 bytes)")
        stream = io.BytesIO(source)
    else:
        stream = Path(source)
        if stream.is_dir():
            raise ImageDecodeError(f"{source} is a folder, not an image file")
        if not stream.is_file():
            raise ImageDecodeError(f"file not found: {source}")
        if stream.stat().st_size == 0:
            raise ImageDecodeError(f"the file is empty (0 bytes): {source}")

    try:
        return Image.open(stream)
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not an image, or an image format that is not supported") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"image data is truncated or corrupt: {error}") from error


def _draft_request(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    # draft() picks the smallest JPEG scale (1/1 to 1/8) at least this large.
    width, height = size
    scale = short_side / max(1, min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing alpha on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_bit_depth_to_rgb(image)
    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow cannot convert 16-bit or float greyscale to "L" without clipping,
    # so stretch the value range to 0..255 first.
    import numpy as np

    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        values = values / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        values = (values - low) / (high - low) * 255.0 if high > low else values * 0.0
    grey = Image.fromarray(values.clip(0, 255).astype("uint8"))
    return grey.convert("RGB")
