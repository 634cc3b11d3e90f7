"""Services for uploads, model versions and prediction claims."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from classifier import selectors, services
from classifier.imaging import EXTENSIONS, ImageRejected
from classifier.models import ModelVersion, Prediction, StoredImage, Upload
from conftest import make_image_bytes

pytestmark = pytest.mark.django_db


def _jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "ExampleCam"  # camera make
    exif[0xA431] = "SERIAL-98765"  # body serial number
    buffer = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((120, 90)).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_upload_create_stores_files_and_pending_prediction(jpeg_bytes):
    upload = services.upload_create(name="nave.jpg", data=jpeg_bytes)

    stored = upload.stored_image
    assert stored.format == "JPEG"
    assert (stored.width, stored.height) == (80, 60)
    assert stored.byte_size == len(jpeg_bytes)
    for name in (stored.original.name, stored.display.name, stored.thumbnail.name):
        assert default_storage.exists(name)
    assert upload.latest_prediction.status == Prediction.Status.PENDING
    assert upload.original_name == "nave.jpg"


def test_upload_create_reuses_stored_file_for_same_content(jpeg_bytes, media_root):
    first = services.upload_create(name="a.jpg", data=jpeg_bytes)
    second = services.upload_create(name="b.JPG", data=jpeg_bytes)

    assert first.pk != second.pk
    assert first.stored_image_id == second.stored_image_id
    assert StoredImage.objects.count() == 1
    assert len(list((media_root / "originals").rglob("*.jpg"))) == 1


def test_upload_create_different_content_stored_separately():
    services.upload_create(name="a.jpg", data=make_image_bytes("JPEG", (64, 48)))
    services.upload_create(name="b.jpg", data=make_image_bytes("JPEG", (65, 48)))

    assert StoredImage.objects.count() == 2


def test_upload_create_keeps_exif_only_in_original():
    upload = services.upload_create(name="camera.jpg", data=_jpeg_with_exif())

    stored = upload.stored_image
    with default_storage.open(stored.original.name) as original:
        assert b"SERIAL-98765" in original.read()
    for name in (stored.display.name, stored.thumbnail.name):
        with default_storage.open(name) as public_copy:
            data = public_copy.read()
        assert b"SERIAL-98765" not in data
        assert b"ExampleCam" not in data
        assert len(Image.open(io.BytesIO(data)).getexif()) == 0


def test_upload_create_rejects_without_storing(media_root):
    with pytest.raises(ImageRejected) as caught:
        services.upload_create(name="notes.jpg", data=b"plain text")

    assert caught.value.code == "not_an_image"
    assert Upload.objects.count() == 0
    assert not list(media_root.rglob("*.*"))


def test_upload_set_hidden_toggles(jpeg_bytes):
    upload = services.upload_create(name="a.jpg", data=jpeg_bytes)

    services.upload_set_hidden(upload, hidden=True)
    assert Upload.objects.get(pk=upload.pk).is_hidden is True

    services.upload_set_hidden(upload, hidden=False)
    assert Upload.objects.get(pk=upload.pk).is_hidden is False


def test_ensure_default_registers_and_activates(tiny_model_dir):
    active = services.model_version_ensure_default()

    assert active is not None
    assert active.is_default
    assert active.is_active
    assert len(active.class_names) == 10
    assert services.model_version_dir(active) == tiny_model_dir


def test_ensure_default_keeps_other_active_version(tmp_path):
    from ml.testing import make_tiny_checkpoint

    other = services.model_version_register(model_dir=make_tiny_checkpoint(tmp_path / "other"), version="other-1")
    services.model_version_activate(other)

    active = services.model_version_ensure_default()

    assert active.pk == other.pk
    assert ModelVersion.objects.filter(is_default=True, is_active=False).count() == 1


def test_model_version_activate_leaves_one_active(tiny_model_dir, tmp_path):
    from ml.testing import make_tiny_checkpoint

    first = services.model_version_register(model_dir=tiny_model_dir, version="first")
    second = services.model_version_register(model_dir=make_tiny_checkpoint(tmp_path / "second"), version="second")

    services.model_version_activate(first)
    services.model_version_activate(second)

    assert list(ModelVersion.objects.filter(is_active=True).values_list("version", flat=True)) == ["second"]


def test_model_version_register_is_idempotent(tiny_model_dir):
    first = services.model_version_register(model_dir=tiny_model_dir, version="v1")
    again = services.model_version_register(model_dir=tiny_model_dir, version="v1")

    assert first.pk == again.pk


def test_model_version_register_rejects_folder_without_description(tmp_path):
    with pytest.raises(ValueError, match="model description not found"):
        services.model_version_register(model_dir=tmp_path)


def _pending_predictions(count: int) -> list[Prediction]:
    uploads = [
        services.upload_create(name=f"{i}.png", data=make_image_bytes("PNG", (40 + i, 30))) for i in range(count)
    ]
    return [upload.latest_prediction for upload in uploads]


def test_claim_takes_waiting_predictions_as_batch():
    predictions = _pending_predictions(3)

    token, claimed = services.predictions_claim(predictions[2].pk, limit=8, worker="w1")

    assert sorted(p.pk for p in claimed) == sorted(p.pk for p in predictions)
    assert all(p.claim_token == token and p.attempts == 1 for p in claimed)


def test_claim_respects_batch_limit():
    predictions = _pending_predictions(3)

    _, claimed = services.predictions_claim(predictions[2].pk, limit=2, worker="w1")

    assert len(claimed) == 2
    assert predictions[2].pk in {p.pk for p in claimed}


def test_claim_twice_gives_second_worker_nothing():
    (prediction,) = _pending_predictions(1)

    _, first = services.predictions_claim(prediction.pk, limit=4, worker="w1")
    _, second = services.predictions_claim(prediction.pk, limit=4, worker="w2")

    assert [p.pk for p in first] == [prediction.pk]
    assert second == []


def test_claim_expired_is_taken_over(settings):
    (prediction,) = _pending_predictions(1)
    services.predictions_claim(prediction.pk, limit=1, worker="dead")
    Prediction.objects.filter(pk=prediction.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=settings.INFERENCE_CLAIM_TIMEOUT + 1)
    )

    _, claimed = services.predictions_claim(prediction.pk, limit=1, worker="alive")

    assert [p.pk for p in claimed] == [prediction.pk]
    assert claimed[0].claimed_by == "alive"
    assert claimed[0].attempts == 2


def test_complete_with_lost_claim_is_dropped(active_model):
    (prediction,) = _pending_predictions(1)
    old_token, _ = services.predictions_claim(prediction.pk, limit=1, worker="slow")
    Prediction.objects.filter(pk=prediction.pk).update(claim_token="someone-else")

    stored = services.prediction_complete(
        prediction, token=old_token, probabilities={"apse": 1.0}, model_version=active_model, inference_ms=1.0
    )

    assert stored is False
    assert Prediction.objects.get(pk=prediction.pk).status == Prediction.Status.PENDING


def test_complete_stores_label_and_version(active_model):
    (prediction,) = _pending_predictions(1)
    token, _ = services.predictions_claim(prediction.pk, limit=1, worker="w1")

    services.prediction_complete(
        prediction,
        token=token,
        probabilities={"apse": 0.7, "dome(inner)": 0.3},
        model_version=active_model,
        inference_ms=12.5,
    )

    stored = Prediction.objects.get(pk=prediction.pk)
    assert stored.status == Prediction.Status.DONE
    assert stored.label == "apse"
    assert stored.confidence == 0.7
    assert stored.model_version == active_model
    assert stored.finished_at is not None
    assert stored.latency_ms >= 0


def test_release_worker_frees_claims_of_previous_run():
    predictions = _pending_predictions(2)
    services.predictions_claim(predictions[0].pk, limit=1, worker="inference@host pid 11")
    services.predictions_claim(predictions[1].pk, limit=1, worker="other@host pid 12")

    released = services.predictions_release_worker("inference@host pid ", claimed_before=timezone.now())

    assert released == 1
    assert Prediction.objects.get(pk=predictions[0].pk).claim_token == ""
    assert Prediction.objects.get(pk=predictions[1].pk).claim_token != ""


def test_prediction_request_adds_new_latest(jpeg_bytes):
    upload = services.upload_create(name="a.jpg", data=jpeg_bytes)
    first = upload.latest_prediction

    second = services.prediction_request(upload)

    assert second.pk != first.pk
    assert Upload.objects.get(pk=upload.pk).latest_prediction_id == second.pk
    assert upload.predictions.count() == 2


def _queued_messages(settings) -> int:
    queue_dir = settings.BROKER_DIR / "queue"
    return len(list(queue_dir.glob("*.msg"))) if queue_dir.exists() else 0


def test_queue_pending_sends_each_once_per_timeout(settings):
    before = _queued_messages(settings)
    _pending_predictions(2)

    assert services.predictions_queue_pending() == 2
    assert services.predictions_queue_pending() == 0
    assert _queued_messages(settings) - before == 2


@pytest.mark.parametrize("case", ["heic", "gif_animated", "png_16bit", "jpeg_cmyk", "webp_lossless_alpha", "tiff"])
def test_upload_create_makes_jpeg_copies_of_any_format(case):
    from classifier.tests.test_imaging import ACCEPTED

    make, expected_format = ACCEPTED[case]

    upload = services.upload_create(name=f"{case}.BIN", data=make())

    stored = upload.stored_image
    assert stored.format == expected_format
    assert stored.original.name.endswith(f".{EXTENSIONS[expected_format]}")
    for name in (stored.display.name, stored.thumbnail.name):
        with default_storage.open(name) as copy:
            image = Image.open(copy)
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (40, 30)


def test_migration_swaps_sizes_recorded_before_rotation():
    import importlib

    from django.apps import apps

    migration = importlib.import_module("classifier.migrations.0002_upright_image_sizes")
    portrait = services.upload_create(name="portrait.jpg", data=make_image_bytes("JPEG", (30, 70))).stored_image
    landscape = services.upload_create(name="landscape.jpg", data=make_image_bytes("JPEG", (70, 30))).stored_image
    StoredImage.objects.filter(pk=portrait.pk).update(width=70, height=30)

    migration.swap_rotated_sizes(apps, None)

    portrait.refresh_from_db()
    landscape.refresh_from_db()
    assert (portrait.width, portrait.height) == (30, 70)
    assert (landscape.width, landscape.height) == (70, 30)


def test_upload_delete_keeps_files_shared_with_another_upload(django_capture_on_commit_callbacks):
    data = make_image_bytes("JPEG", (44, 33))
    first = services.upload_create(name="a.jpg", data=data)
    second = services.upload_create(name="b.jpg", data=data)
    stored = first.stored_image
    names = [stored.original.name, stored.display.name, stored.thumbnail.name]

    services.upload_delete(first)

    assert not Upload.objects.filter(pk=first.pk).exists()
    assert not Prediction.objects.filter(upload_id=first.pk).exists()
    assert StoredImage.objects.filter(pk=stored.pk).exists()
    assert all(default_storage.exists(name) for name in names)

    with django_capture_on_commit_callbacks(execute=True):
        services.upload_delete(second)

    assert not StoredImage.objects.filter(pk=stored.pk).exists()
    assert not any(default_storage.exists(name) for name in names)


def test_upload_create_after_delete_stores_content_again(django_capture_on_commit_callbacks):
    data = make_image_bytes("JPEG", (45, 33))
    first = services.upload_create(name="a.jpg", data=data)
    with django_capture_on_commit_callbacks(execute=True):
        services.upload_delete(first)

    again = services.upload_create(name="a.jpg", data=data)

    assert default_storage.exists(again.stored_image.original.name)
    assert again.stored_image.pk != first.stored_image_id


def test_ensure_default_picks_up_recorded_scores(tmp_path, settings):
    import shutil

    from ml.checkpoints import read_description, write_description

    model_dir = tmp_path / "default"
    shutil.copytree(settings.DEFAULT_MODEL_DIR, model_dir)
    settings.DEFAULT_MODEL_DIR = str(model_dir)
    registered = services.model_version_ensure_default()
    description = read_description(model_dir)
    description["metrics"] = {**description.get("metrics", {}), "test": {"accuracy": 0.97, "macro_f1": 0.96}}
    write_description(model_dir, description)

    services.model_version_ensure_default()

    registered.refresh_from_db()
    assert registered.metrics["test"] == {"accuracy": 0.97, "macro_f1": 0.96}


def test_verified_label_set_and_cleared(admin_user, jpeg_bytes):
    upload = services.upload_create(name="a.jpg", data=jpeg_bytes)

    services.upload_set_verified_label(upload, label=" apse ", user=admin_user)
    stored = Upload.objects.get(pk=upload.pk)
    assert stored.verified_label == "apse"
    assert stored.verified_by == admin_user
    assert stored.verified_at is not None

    services.upload_set_verified_label(upload, label="", user=admin_user)
    cleared = Upload.objects.get(pk=upload.pk)
    assert cleared.verified_label == ""
    assert cleared.verified_by is None
    assert cleared.verified_at is None


def test_verified_label_rejects_unknown_class(admin_user, jpeg_bytes):
    upload = services.upload_create(name="a.jpg", data=jpeg_bytes)

    with pytest.raises(services.InvalidLabel) as error:
        services.upload_set_verified_label(upload, label="chapel", user=admin_user)

    assert "label 'chapel' is not a class of the active model. Use one of: altar" in str(error.value)
    assert "altar" in str(error.value)
    assert Upload.objects.get(pk=upload.pk).verified_label == ""


def test_verified_agreement_counts_per_version(admin_user, active_model):
    labels = [("apse", "apse"), ("apse", "vault"), ("altar", "altar")]
    for index, (predicted, checked) in enumerate(labels):
        upload = services.upload_create(name=f"{index}.png", data=make_image_bytes("PNG", (40 + index, 30)))
        Prediction.objects.filter(pk=upload.latest_prediction_id).update(
            status=Prediction.Status.DONE, label=predicted, model_version=active_model
        )
        services.upload_set_verified_label(upload, label=checked, user=admin_user)
    services.upload_create(name="unchecked.png", data=make_image_bytes("PNG", (50, 30)))

    rows = selectors.verified_agreement()

    assert len(rows) == 1
    assert rows[0]["version"] == active_model.version
    assert rows[0]["is_active"] is True
    assert rows[0]["checked"] == 3
    assert rows[0]["agreed"] == 2
    assert rows[0]["accuracy"] == pytest.approx(2 / 3)


def test_confidence_migration_fills_finished_predictions(jpeg_bytes):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("classifier.migrations.0004_prediction_confidence")
    upload = services.upload_create(name="a.jpg", data=jpeg_bytes)
    pending = services.upload_create(name="b.png", data=make_image_bytes("PNG", (33, 20)))
    Prediction.objects.filter(pk=upload.latest_prediction_id).update(
        status=Prediction.Status.DONE, label="vault", probabilities={"apse": 0.4, "vault": 0.6}
    )

    migration.fill_confidence(apps, None)

    assert Prediction.objects.get(pk=upload.latest_prediction_id).confidence == 0.6
    assert Prediction.objects.get(pk=pending.latest_prediction_id).confidence is None
