"""Validation of uploaded files: every accepted format and mode, every rejection reason."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from classifier.imaging import ImageRejected, encode_jpeg_copy, inspect_image, reject_if_too_large
from conftest import make_image_bytes

LIMITS = {
    "max_bytes": 5 * 1024 * 1024,
    "max_pixels": 50_000_000,
    "allowed_formats": ["JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"],
}


def _gradient(mode: str, size=(40, 30)) -> Image.Image:
    return Image.linear_gradient("L").resize(size).convert(mode)


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _animated(image_format: str) -> bytes:
    frames = [Image.new("RGB", (40, 30), color) for color in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=image_format, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def _png_16bit() -> bytes:
    image = Image.new("I;16", (40, 30))
    image.putdata([i * 50 for i in range(40 * 30)])
    return _encode(image, "PNG")


def _heic() -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(_gradient("RGB")).save(buffer, quality=80)
    return buffer.getvalue()


ACCEPTED = {
    "jpeg_baseline": (lambda: _encode(_gradient("RGB"), "JPEG"), "JPEG"),
    "jpeg_progressive": (lambda: _encode(_gradient("RGB"), "JPEG", progressive=True), "JPEG"),
    "jpeg_cmyk": (lambda: _encode(_gradient("CMYK"), "JPEG"), "JPEG"),
    "jpeg_greyscale": (lambda: _encode(_gradient("L"), "JPEG"), "JPEG"),
    "png_rgb": (lambda: _encode(_gradient("RGB"), "PNG"), "PNG"),
    "png_transparent": (lambda: _encode(_gradient("RGBA"), "PNG"), "PNG"),
    "png_palette": (lambda: _encode(_gradient("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), "PNG"),
    "png_palette_transparent": (
        lambda: _encode(_gradient("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
        "PNG",
    ),
    "png_16bit": (_png_16bit, "PNG"),
    "png_greyscale_alpha": (lambda: _encode(_gradient("LA"), "PNG"), "PNG"),
    "webp_lossy": (lambda: _encode(_gradient("RGB"), "WEBP", quality=80), "WEBP"),
    "webp_lossless_alpha": (lambda: _encode(_gradient("RGBA"), "WEBP", lossless=True), "WEBP"),
    "webp_animated": (lambda: _animated("WEBP"), "WEBP"),
    "gif": (lambda: _encode(_gradient("RGB").convert("P"), "GIF"), "GIF"),
    "gif_animated": (lambda: _animated("GIF"), "GIF"),
    "bmp": (lambda: _encode(_gradient("RGB"), "BMP"), "BMP"),
    "tiff": (lambda: _encode(_gradient("RGB"), "TIFF"), "TIFF"),
    "tiff_cmyk_compressed": (lambda: _encode(_gradient("CMYK"), "TIFF", compression="tiff_lzw"), "TIFF"),
    "heic": (_heic, "HEIF"),
    "avif": (lambda: _encode(_gradient("RGB"), "AVIF", quality=70), "AVIF"),
    "avif_alpha": (lambda: _encode(_gradient("RGBA"), "AVIF"), "AVIF"),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_inspect_accepts_format(case):
    make, expected_format = ACCEPTED[case]

    inspected = inspect_image(f"{case}.bin", make(), **LIMITS)

    assert inspected.format == expected_format
    assert (inspected.width, inspected.height) == (40, 30)
    assert inspected.rgb.mode == "RGB"
    assert inspected.rgb.size == (40, 30)


def test_inspect_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _encode(_gradient("RGB", (60, 20)), "JPEG", exif=exif.tobytes())

    inspected = inspect_image("portrait.jpg", data, **LIMITS)

    assert inspected.rgb.size == (20, 60)
    assert (inspected.width, inspected.height) == (20, 60)


def test_inspect_composites_transparency_on_white():
    data = _encode(Image.new("RGBA", (10, 10), (0, 0, 0, 0)), "PNG")

    inspected = inspect_image("clear.png", data, **LIMITS)

    assert inspected.rgb.getpixel((5, 5)) == (255, 255, 255)


def test_inspect_decides_by_content_not_name():
    png = _encode(_gradient("RGB"), "PNG")

    for name in ("photo.jpg", "PHOTO.JPG", "photo.PnG", "no-extension"):
        assert inspect_image(name, png, **LIMITS).format == "PNG"


def _reject(name: str, data: bytes, **limits) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        inspect_image(name, data, **{**LIMITS, **limits})
    return caught.value


def test_inspect_rejects_empty_file():
    rejection = _reject("empty.jpg", b"")

    assert rejection.code == "empty_file"
    assert "empty.jpg" in rejection.message


def test_inspect_rejects_truncated_jpeg():
    data = make_image_bytes("JPEG", (400, 300))

    rejection = _reject("cut.jpg", data[: len(data) // 2])

    assert rejection.code == "corrupt"
    assert "truncated or corrupt" in rejection.message


def test_inspect_rejects_corrupt_png_body():
    data = bytearray(_encode(_gradient("RGB", (200, 200)), "PNG"))
    data[100:140] = b"\x00" * 40

    assert _reject("broken.png", bytes(data)).code == "corrupt"


def test_inspect_rejects_text_named_jpg():
    rejection = _reject("notes.JPG", b"These are my travel notes, not a photo.\n" * 10)

    assert rejection.code == "not_an_image"
    assert "notes.JPG" in rejection.message
    assert "not an image" in rejection.message


def test_inspect_rejects_oversize_bytes():
    data = make_image_bytes("PNG", (300, 300))

    rejection = _reject("big.png", data, max_bytes=len(data) - 1)

    assert rejection.code == "file_too_large"
    assert "larger than the limit" in rejection.message


def _png_claiming_size(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels."""
    data = bytearray(_encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_inspect_rejects_pixel_bomb_without_decoding():
    # 100,000 x 100,000 pixels would need 10 GB once decoded.
    rejection = _reject("bomb.png", _png_claiming_size(100_000, 100_000))

    assert rejection.code == "pixel_limit"
    assert "megapixels" in rejection.message


def test_inspect_rejects_image_over_site_pixel_limit():
    rejection = _reject("wide.png", _png_claiming_size(9000, 6000), max_pixels=50_000_000)

    assert rejection.code == "pixel_limit"
    assert "9000 × 6000" in rejection.message


def test_inspect_rejects_svg():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'

    rejection = _reject("drawing.svg", svg)

    assert rejection.code == "unsupported_format"
    assert "SVG" in rejection.message


def test_inspect_rejects_pdf():
    rejection = _reject("scan.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << >> endobj\n%%EOF\n")

    assert rejection.code == "unsupported_format"
    assert "PDF" in rejection.message


def test_inspect_rejects_format_not_allowed():
    icon = _encode(_gradient("RGB", (32, 32)), "ICO")

    rejection = _reject("favicon.ico", icon)

    assert rejection.code == "unsupported_format"
    assert rejection.message.startswith("“favicon.ico” is in ICO format, which is not supported. Upload a photo in ")


def test_jpeg_copy_has_no_exif_and_fits():
    exif = Image.Exif()
    exif[0x8825] = {2: (48.0, 51.0, 29.0)}  # GPS latitude
    exif[0xA431] = "SERIAL-12345"  # body serial number
    image = Image.open(io.BytesIO(_encode(_gradient("RGB", (800, 400)), "JPEG", exif=exif.tobytes())))

    copy = Image.open(io.BytesIO(encode_jpeg_copy(image.convert("RGB"), max_side=200, quality=80)))

    assert copy.size == (200, 100)
    assert "exif" not in copy.info
    assert len(copy.getexif()) == 0


@pytest.mark.parametrize(
    ("name", "head", "kind"),
    [
        ("IMG_0001.CR2", b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(64), "Canon CR2"),
        ("IMG_0002.CR3", b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01" + bytes(64), "Canon CR3"),
        ("DSCF0003.RAF", b"FUJIFILMCCD-RAW 0201FF383501" + bytes(64), "Fujifilm RAF"),
        ("P0004.ORF", b"IIRO\x08\x00\x00\x00" + bytes(64), "Olympus ORF"),
        ("P0005.RW2", b"IIU\x00\x18\x00\x00\x00" + bytes(64), "Panasonic RW2"),
    ],
)
def test_inspect_rejects_raw_by_signature(name, head, kind):
    rejection = _reject(name, head)

    assert rejection.code == "unsupported_format"
    assert f"camera RAW file ({kind})" in rejection.message
    assert "Export it as JPEG or TIFF" in rejection.message


def test_inspect_rejects_dng_whatever_its_name():
    buffer = io.BytesIO()
    _gradient("RGB", (40, 30)).save(buffer, "TIFF", tiffinfo={50706: b"\x01\x04\x00\x00"})

    rejection = _reject("export.tif", buffer.getvalue())

    assert rejection.code == "unsupported_format"
    assert "(DNG)" in rejection.message


def test_inspect_rejects_tiff_based_raw_by_extension():
    # A NEF or ARW opens as a TIFF whose first image is a small preview.
    preview = _encode(_gradient("RGB", (40, 30)), "TIFF")

    rejection = _reject("DSC_0006.NEF", preview)
    accepted = inspect_image("scan.tif", preview, **LIMITS)

    assert "(Nikon NEF, by its .nef name; rename a plain TIFF to .tif)" in rejection.message
    assert accepted.format == "TIFF"


def test_size_limit_message_names_binary_units():
    with pytest.raises(ImageRejected) as caught:
        reject_if_too_large("scan.tif", 3 * 1024 * 1024 + 512 * 1024, max_bytes=2 * 1024 * 1024)

    assert caught.value.message == "“scan.tif” is 3.5 MiB, larger than the limit of 2.0 MiB."
