import io

import numpy as np
import pytest
from PIL import Image

from ml.errors import ImageDecodeError
from ml.images import open_image
from ml.inference import Predictor


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return Predictor(tiny_model, device="cpu")


def _photo(size=(48, 40)):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _image_in_mode(mode):
    photo = _photo()
    if mode == "I;16":
        grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
        return Image.fromarray(grey)
    if mode == "P":
        return photo.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "RGBA":
        image = photo.convert("RGBA")
        image.putalpha(Image.new("L", image.size, 128))
        return image
    return photo.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_predictor_accepts_every_pillow_mode(predictor, mode):
    image = _image_in_mode(mode)
    assert image.mode == mode

    [probabilities] = predictor.predict([image])

    assert list(probabilities) == predictor.class_names
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_open_image_converts_16_bit_without_clipping():
    grey = np.full((8, 8), 32768, dtype=np.uint16)

    image = open_image(Image.fromarray(grey))

    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (127, 127, 127)


def test_open_image_composites_transparency_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))

    assert open_image(image).getpixel((0, 0)) == (255, 255, 255)


def _with_orientation(image, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


def test_open_image_applies_exif_rotation():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))

    upright = open_image(_with_orientation(image, 6))

    assert upright.size == (20, 40)
    red, _, blue = upright.getpixel((10, 5))
    assert red > 200
    assert blue < 60
    red, _, blue = upright.getpixel((10, 35))
    assert blue > 200
    assert red < 60


def test_predictor_output_follows_exif_rotation(predictor):
    photo = _photo((64, 32))
    rotated_by_tag = _with_orientation(photo, 6)
    buffer = io.BytesIO()
    photo.transpose(Image.Transpose.ROTATE_270).save(buffer, "JPEG", quality=95)

    by_tag, by_pixels = predictor.predict([rotated_by_tag, buffer.getvalue()])

    for name in predictor.class_names:
        assert by_tag[name] == pytest.approx(by_pixels[name], abs=0.02)


def test_predictor_accepts_bytes_and_batches(predictor):
    buffer = io.BytesIO()
    _photo().save(buffer, "PNG")
    images = [buffer.getvalue()] * 40

    results = predictor.predict(images)

    assert len(results) == 40
    assert results[0] == pytest.approx(results[39])


def test_predictor_rejects_bytes_that_are_not_an_image(predictor):
    with pytest.raises(ImageDecodeError, match="not an image"):
        predictor.predict([b"%PDF-1.4 hello"])


def test_open_image_rejects_empty_and_truncated_data():
    buffer = io.BytesIO()
    _photo((200, 200)).save(buffer, "JPEG")

    with pytest.raises(ImageDecodeError, match="empty"):
        open_image(b"")
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        open_image(buffer.getvalue()[:300])


def test_open_image_decodes_large_jpeg_at_reduced_scale():
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 4000), (90, 120, 150)).save(buffer, "JPEG", quality=80)

    image = open_image(buffer.getvalue(), draft_size=64)

    assert min(image.size) >= 64
    assert image.size[0] <= 6000 // 8 * 2


def test_open_image_takes_first_frame_of_animation():
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])

    image = open_image(buffer.getvalue())

    red, green, _ = image.getpixel((8, 8))
    assert red > 200
    assert green < 60


def test_predictor_without_model_dir_uses_default(monkeypatch, tiny_model):
    import ml

    monkeypatch.setattr(ml, "DEFAULT_MODEL_DIR", tiny_model)

    assert Predictor(device="cpu").model_dir == tiny_model


def test_open_image_rejects_camera_raw(tmp_path):
    raf = b"FUJIFILMCCD-RAW 0201FF383501" + bytes(64)
    preview = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 60, 30)).save(preview, "TIFF")
    nef = tmp_path / "DSC_0001.NEF"
    nef.write_bytes(preview.getvalue())
    tif = tmp_path / "scan.tif"
    tif.write_bytes(preview.getvalue())

    with pytest.raises(ImageDecodeError, match=r"camera RAW file \(Fujifilm RAF\)"):
        open_image(raf)
    with pytest.raises(
        ImageDecodeError, match=r"camera RAW file \(Nikon NEF, by its .nef name; rename a plain TIFF to .tif\)"
    ):
        open_image(nef)
    assert open_image(tif).size == (40, 30)
