"""manage.py import_photos: a folder on the server uploaded as a batch."""

import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from classifier.models import Upload
from conftest import make_image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "archive"
    (folder / "Saint Denis").mkdir(parents=True)
    (folder / "nave.jpg").write_bytes(make_image_bytes("JPEG", (60, 40)))
    (folder / "Saint Denis" / "portal 1.png").write_bytes(make_image_bytes("PNG", (61, 40)))
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    return folder


def test_import_uploads_each_photo_once(photo_folder, django_user_model):
    owner = django_user_model.objects.create_user("archive", password="archive-password")
    first = StringIO()
    again = StringIO()

    call_command("import_photos", str(photo_folder), "--owner", "archive", stdout=first)
    public = list(Upload.objects.filter(is_hidden=False))
    call_command("import_photos", str(photo_folder), "--owner", "archive", "--hide", stdout=again)

    uploads = Upload.objects.order_by("original_name")
    assert len(public) == 2
    assert [upload.original_name for upload in uploads] == ["Saint Denis/portal 1.png", "nave.jpg"]
    assert all(upload.owner == owner for upload in uploads)
    assert all(upload.is_hidden for upload in uploads)
    assert all(upload.latest_prediction is not None for upload in uploads)
    assert "2 photos uploaded, 0 already uploaded and skipped, 0 rejected. Their predictions" in first.getvalue()
    assert "0 photos uploaded, 2 already uploaded and skipped, 0 rejected.\n" in again.getvalue()
    nave = Upload.objects.get(original_name="nave.jpg")
    assert f"skipped nave.jpg: already uploaded as photo {nave.pk}\n" in again.getvalue()


def test_import_without_owner_ignores_visitor_uploads(photo_folder):
    from classifier import services

    visitor = services.upload_create(name="nave.jpg", data=(photo_folder / "nave.jpg").read_bytes())
    output = StringIO()

    call_command("import_photos", str(photo_folder), "--hide", stdout=output)

    visitor.refresh_from_db()
    assert "2 photos uploaded, 0 already uploaded and skipped" in output.getvalue()
    assert visitor.is_hidden is False
    assert Upload.objects.filter(original_name="nave.jpg", imported=True, is_hidden=True).count() == 1


def test_import_hides_new_photos_from_the_start(photo_folder):
    call_command("import_photos", str(photo_folder), "--hide", stdout=StringIO())

    assert Upload.objects.count() == 2
    assert not Upload.objects.filter(is_hidden=False).exists()


def test_import_reports_rejected_files_and_keeps_others(photo_folder):
    (photo_folder / "notes.txt").write_text("not a photo")
    output = StringIO()

    with pytest.raises(CommandError, match="1 file rejected, listed above"):
        call_command("import_photos", str(photo_folder), stdout=output)

    assert "rejected notes.txt:" in output.getvalue()
    assert Upload.objects.count() == 2


def test_import_rejects_file_over_byte_limit(photo_folder, settings):
    settings.UPLOAD_MAX_BYTES = 100
    output = StringIO()

    with pytest.raises(CommandError, match="2 files rejected, listed above"):
        call_command("import_photos", str(photo_folder), stdout=output)

    assert "larger than the limit of 100 bytes" in output.getvalue()
    assert not Upload.objects.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{folder}/missing"], "folder not found"),
        (["{folder}", "--owner", "nobody"], "user 'nobody' not found"),
        (["{folder}/nave.jpg"], "is a file, not a folder"),
    ],
)
def test_import_rejects_bad_arguments(photo_folder, arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("import_photos", *[argument.format(folder=photo_folder) for argument in arguments])

    assert not Upload.objects.exists()


def test_import_shows_service_log_lines_only_when_verbose(photo_folder, caplog):
    caplog.set_level("INFO")

    call_command("import_photos", str(photo_folder), stdout=StringIO())
    quiet = [record.getMessage() for record in caplog.records if record.name.startswith("classifier")]
    caplog.clear()
    call_command("import_photos", str(photo_folder / "Saint Denis"), "--verbosity", "2", stdout=StringIO())
    verbose = [record.getMessage() for record in caplog.records if record.name.startswith("classifier")]

    assert not any("created from" in message for message in quiet)
    assert any("created from 'portal 1.png'" in message for message in verbose)
    assert logging.getLogger("classifier").level == logging.NOTSET  # restored after the command


def test_import_of_empty_folder_is_an_error(tmp_path):
    (tmp_path / ".hidden.jpg").write_bytes(make_image_bytes("JPEG", (60, 40)))

    with pytest.raises(CommandError, match=r"no files found under .* \(hidden files and folders are skipped\)"):
        call_command("import_photos", str(tmp_path), stdout=StringIO())
