"""Checks that an uploaded file is an image the site accepts, and the public copies made from it.

Pure Pillow (through ``ml.images``), so the web process can use it without
importing torch. The header is read first: the byte limit, the format and
the pixel limit are checked before any pixel data is decoded, so a
decompression bomb is rejected without being expanded.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Importing ml.images also registers pillow-heif's HEIC/HEIF opener.
from ml.errors import ImageDecodeError
from ml.images import camera_raw_kind, open_image

logger = logging.getLogger(__name__)

ACCEPTED_FORMATS_TEXT = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC or AVIF"
# Values for the file picker; browsers compare them case-insensitively, and
# the server ignores the name and reads the content.
ACCEPT_TYPES = (
    "image/*",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
)
ACCEPT_ATTRIBUTE = ",".join(ACCEPT_TYPES)


class ImageRejected(Exception):
    """An upload that the site does not accept; ``message`` is shown to the visitor."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class InspectedImage:
    format: str
    width: int
    height: int
    rgb: Image.Image


def _file_size(size: int) -> str:
    # Binary units, named as such: the limits are set in bytes and shown as MiB.
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} bytes"


def reject_if_too_large(name: str, size: int, max_bytes: int) -> None:
    """Raise ImageRejected for a file of `size` bytes over `max_bytes`, which callers may check before reading it."""
    if size > max_bytes:
        raise ImageRejected(
            "file_too_large", f"“{name}” is {_file_size(size)}, larger than the limit of {_file_size(max_bytes)}."
        )


def _looks_like_svg(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in text


def _reject_raw(name: str, kind: str) -> None:
    raise ImageRejected(
        "unsupported_format",
        f"“{name}” is a camera RAW file ({kind}), which is not supported. "
        "Export it as JPEG or TIFF in your camera or photo software and upload that.",
    )


def _reject_known_non_photos(name: str, head: bytes) -> None:
    kind = camera_raw_kind(head)
    if kind:
        _reject_raw(name, kind)
    if head.startswith(b"%PDF-"):
        raise ImageRejected(
            "unsupported_format",
            f"“{name}” is a PDF document, not a photo. Upload a photo in {ACCEPTED_FORMATS_TEXT} format.",
        )
    if _looks_like_svg(head[:4096]):
        raise ImageRejected(
            "unsupported_format",
            f"“{name}” is an SVG drawing, which is not supported. Upload a photo in {ACCEPTED_FORMATS_TEXT} format.",
        )


def _open_header(name: str, data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns (and only raises above twice its own limit) for
            # large images; the site applies its own limit right after.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageRejected(
            "pixel_limit",
            f"“{name}” has more pixels than the limit of {max_pixels / 1e6:.0f} megapixels.",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageRejected(
            "not_an_image",
            f"“{name}” is not an image. Upload a photo in {ACCEPTED_FORMATS_TEXT} format.",
        ) from None


def inspect_image(
    name: str, data: bytes, *, max_bytes: int, max_pixels: int, allowed_formats: list[str]
) -> InspectedImage:
    """Validate an upload by its content and decode it to RGB.

    Raises ``ImageRejected`` with one of the codes ``empty_file``,
    ``file_too_large``, ``not_an_image``, ``unsupported_format``,
    ``pixel_limit`` or ``corrupt``.
    """
    if not data:
        raise ImageRejected(
            "empty_file",
            f"“{name}” is empty (0 bytes). Choose the photo again once it has finished copying or downloading.",
        )
    reject_if_too_large(name, len(data), max_bytes)

    _reject_known_non_photos(name, data[:4096])
    image = _open_header(name, data, max_pixels)
    kind = camera_raw_kind(data[:64], image, name)
    if kind:
        _reject_raw(name, kind)

    if image.format not in allowed_formats:
        raise ImageRejected(
            "unsupported_format",
            f"“{name}” is in {image.format} format, which is not supported. "
            f"Upload a photo in {ACCEPTED_FORMATS_TEXT} format.",
        )

    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            "pixel_limit",
            f"“{name}” is {width} × {height} pixels ({width * height / 1e6:.0f} megapixels), "
            f"more than the limit of {max_pixels / 1e6:.0f} megapixels.",
        )

    try:
        rgb = open_image(image)
    except (ImageDecodeError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        logger.info("upload %r rejected as corrupt: %s", name, error)
        raise ImageRejected(
            "corrupt",
            f"“{name}” is truncated or corrupt and cannot be read. Try saving or exporting it again.",
        ) from None

    # The stored size is the upright one, as pages and the API show the photo.
    return InspectedImage(format=image.format, width=rgb.width, height=rgb.height, rgb=rgb)


def encode_jpeg_copy(rgb: Image.Image, max_side: int, quality: int) -> bytes:
    """Return a JPEG of ``rgb`` scaled to fit ``max_side``, with no metadata at all."""
    copy = rgb.copy()
    copy.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)

    buffer = io.BytesIO()
    # Pillow writes EXIF only when asked (exif=...), so the copy carries no
    # GPS position or camera serial.
    copy.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# File name extensions for the stored originals, by Pillow format name.
EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "HEIF": "heic",
    "AVIF": "avif",
}
