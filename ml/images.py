"""Decode any image a phone or camera produces into an upright RGB picture.

Pure Pillow, with pillow-heif for HEIC/HEIF when it is installed, so the web
process can use it for validation without importing torch.
"""

from __future__ import annotations

import io
import logging
import warnings
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

# Camera RAW files need a demosaicing decoder that Pillow does not have.
# Several are TIFF files whose first image is only a small preview, so
# Pillow would read that preview without complaint. They are recognised by
# their signature, by the DNGVersion TIFF tag, or, for TIFF-based formats
# with no signature of their own, by the file name extension.
_RAW_SIGNATURES = (
    (0, b"FUJIFILMCCD-RAW", "Fujifilm RAF"),
    (0, b"IIRO", "Olympus ORF"),
    (0, b"IIRS", "Olympus ORF"),
    (0, b"MMOR", "Olympus ORF"),
    (0, b"IIU\x00", "Panasonic RW2"),
    (4, b"ftypcrx ", "Canon CR3"),
    (8, b"CR\x02\x00", "Canon CR2"),
)
_RAW_EXTENSIONS = {
    "arw": "Sony ARW", "cr2": "Canon CR2", "cr3": "Canon CR3", "dng": "DNG", "nef": "Nikon NEF",
    "nrw": "Nikon NRW", "orf": "Olympus ORF", "pef": "Pentax PEF", "raf": "Fujifilm RAF",
    "rw2": "Panasonic RW2", "srw": "Samsung SRW", "x3f": "Sigma X3F",
}  # fmt: skip
_DNG_VERSION_TAG = 50706


def camera_raw_kind(head: bytes, image: Image.Image | None = None, name: str = "") -> str | None:
    """Name the camera RAW format of a file ("Canon CR2", "DNG", ...), or return None.

    `head` is the file's first bytes (64 are enough). `image`, the file opened
    by Pillow, and `name` let TIFF-based formats be recognised too.
    """
    for offset, signature, kind in _RAW_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return kind
    if image is not None and image.format == "TIFF":
        if _DNG_VERSION_TAG in image.tag_v2:
            return "DNG"
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if extension in _RAW_EXTENSIONS:
            # The content is a plain TIFF, so the kind names the extension as
            # the reason and tells the owner of a real TIFF to rename it.
            return f"{_RAW_EXTENSIONS[extension]}, by its .{extension} name; rename a plain TIFF to .tif"
    return None


def open_image(source: ImageSource, draft_size: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Decode `source` into an RGB image with its EXIF orientation applied.

    Animated images give their first frame. Transparency is composited on
    white and 16-bit or CMYK data is converted to 8-bit RGB. With
    `draft_size`, a JPEG is decoded at a reduced scale that still covers
    `draft_size` pixels on its short side, which makes 24-megapixel photos
    cheap to classify. With `max_pixels`, a larger image is rejected from its
    header, before any decoding.
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        image = _open(source)

    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(f"the image is {width} × {height} pixels, more than the limit of {max_pixels:,}")

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

    head = source[:64] if isinstance(source, (bytes, bytearray)) else _read_head(stream)
    name = "" if isinstance(source, (bytes, bytearray)) else str(source)
    _reject_camera_raw(camera_raw_kind(head))
    try:
        # Callers set their own pixel limit (open_image's max_pixels, the site's
        # IMAGE_MAX_PIXELS), so Pillow's warning above its default limit is noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not an image, or an image format that is not supported") from error
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"the image has more pixels than Pillow decodes safely: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"image data is truncated or corrupt: {error}") from error

    _reject_camera_raw(camera_raw_kind(head, image, name))
    return image


def _reject_camera_raw(kind: str | None) -> None:
    if kind:
        raise ImageDecodeError(
            f"the file is a camera RAW file ({kind}), which is not supported. Export it as JPEG or TIFF first"
        )


def _read_head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(64)


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
