"""Staff-checked uploads written as a dataset folder and registered for training jobs."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from classifier import selectors
from classifier import services as classifier_services
from classifier.models import Upload
from conftest import make_image_bytes
from training_jobs.models import Dataset

pytestmark = pytest.mark.django_db


def _checked(label: str, index: int, user, **options) -> Upload:
    upload = classifier_services.upload_create(name=f"{index}.png", data=make_image_bytes("PNG", (40 + index, 30)))
    if options.get("hidden"):
        classifier_services.upload_set_hidden(upload, hidden=True)
    classifier_services.upload_set_verified_label(upload, label=label, user=user)
    return upload


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {label: count for label, count in counts.items() if count}


def _files(folder, split, label) -> set[str]:
    return {path.name for path in (folder / split / label).iterdir()}


def test_export_splits_each_class(tmp_path, admin_user):
    apse = [_checked("apse", index, admin_user) for index in range(5)]
    vault = [_checked("vault", 10 + index, admin_user) for index in range(2)]
    altar = _checked("altar", 20, admin_user)
    classifier_services.upload_create(name="unchecked.png", data=make_image_bytes("PNG", (90, 30)))

    result = classifier_services.checked_photos_export(tmp_path / "checked", test_fraction=0.4, seed=3)

    folder = tmp_path / "checked"
    assert _nonzero(result["counts"]["train"]) == {"altar": 1, "apse": 3, "vault": 1}
    assert _nonzero(result["counts"]["test"]) == {"apse": 2, "vault": 1}
    assert set(result["counts"]["train"]) == set(selectors.class_names())
    assert list((folder / "test" / "column").iterdir()) == []
    assert _files(folder, "train", "apse") | _files(folder, "test", "apse") == {f"{u.pk}.jpg" for u in apse}
    assert _files(folder, "train", "vault") | _files(folder, "test", "vault") == {f"{u.pk}.jpg" for u in vault}
    assert _files(folder, "train", "altar") == {f"{altar.pk}.jpg"}
    with Image.open(folder / "train" / "altar" / f"{altar.pk}.jpg") as image:
        assert image.format == "JPEG"
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_export_is_seeded(tmp_path, admin_user):
    for index in range(8):
        _checked("apse", index, admin_user)

    classifier_services.checked_photos_export(tmp_path / "a", seed=1)
    classifier_services.checked_photos_export(tmp_path / "b", seed=1)

    assert _files(tmp_path / "a", "test", "apse") == _files(tmp_path / "b", "test", "apse")
    assert len(_files(tmp_path / "a", "test", "apse")) == 2


def test_export_skips_same_bytes_with_two_labels(tmp_path, admin_user):
    data = make_image_bytes("PNG", (50, 30))
    first = classifier_services.upload_create(name="a.png", data=data)
    second = classifier_services.upload_create(name="b.png", data=data)
    classifier_services.upload_set_verified_label(first, label="apse", user=admin_user)
    classifier_services.upload_set_verified_label(second, label="vault", user=admin_user)
    _checked("altar", 1, admin_user)
    _checked("altar", 2, admin_user)

    result = classifier_services.checked_photos_export(tmp_path / "out")

    assert result["skipped"] == [
        f"uploads {first.pk}, {second.pk} have the same bytes but different checked labels (apse, vault)"
    ]
    assert _nonzero(result["counts"]["train"]) == {"altar": 1}


def test_export_leaves_out_hidden_photos_unless_asked(tmp_path, admin_user):
    _checked("apse", 1, admin_user)
    hidden = _checked("vault", 2, admin_user, hidden=True)

    public = classifier_services.checked_photos_export(tmp_path / "public")
    everything = classifier_services.checked_photos_export(tmp_path / "all", include_hidden=True)

    assert _nonzero(public["counts"]["train"]) == {"apse": 1}
    assert _files(tmp_path / "all", "train", "vault") == {f"{hidden.pk}.jpg"}
    assert _nonzero(everything["counts"]["train"]) == {"apse": 1, "vault": 1}


def test_export_reports_missing_file(tmp_path, admin_user):
    from django.core.files.storage import default_storage

    present = _checked("apse", 1, admin_user)
    lost = _checked("apse", 2, admin_user)
    default_storage.delete(lost.stored_image.display.name)

    result = classifier_services.checked_photos_export(tmp_path / "out")

    assert result["skipped"] == [f"upload {lost.pk}: its display file {lost.stored_image.display.name} is missing"]
    assert result["counts"]["train"]["apse"] + result["counts"]["test"]["apse"] == 1
    assert {path.name for path in (tmp_path / "out").rglob("*.jpg")} == {f"{present.pk}.jpg"}


@pytest.mark.parametrize(
    ("setup", "options", "message"),
    [
        ("nothing", {}, "no checked photo to export"),
        ("full_folder", {}, "is not empty. Name a new or empty folder."),
        ("file", {}, "is a file. Name a new or empty folder."),
        ("photo", {"test_fraction": 0}, "test fraction must be above 0 and at most 0.9, not 0"),
        ("photo", {"test_fraction": 0.95}, "not 0.95"),
    ],
)
def test_export_rejects_bad_requests(tmp_path, admin_user, setup, options, message):
    folder = tmp_path / "out"
    if setup == "full_folder":
        _checked("apse", 1, admin_user)
        folder.mkdir()
        (folder / "notes.txt").write_text("keep me")
    if setup == "file":
        _checked("apse", 1, admin_user)
        folder.write_text("keep me")
    if setup == "photo":
        _checked("apse", 1, admin_user)

    with pytest.raises(classifier_services.CheckedExportError) as error:
        classifier_services.checked_photos_export(folder, **options)

    assert message in str(error.value)
    if setup == "full_folder":
        assert (folder / "notes.txt").read_text() == "keep me"
    elif setup == "file":
        assert folder.read_text() == "keep me"
    else:
        assert not folder.exists()


def test_command_exports_and_registers(tmp_path, admin_user):
    names = selectors.class_names()
    for class_index, name in enumerate(names):
        for index in range(3):
            _checked(name, 10 * class_index + index, admin_user)
    output = StringIO()

    call_command("export_checked_photos", str(tmp_path / "checked"), "--register", stdout=output)

    text = output.getvalue()
    dataset = Dataset.objects.get()
    assert "apse                       2       1" in text
    assert f"Registered as dataset {dataset.pk} 'checked', ready for training jobs." in text
    assert dataset.class_names == sorted(names)
    assert dataset.is_complete


def test_command_hides_service_logs_unless_verbose(tmp_path, admin_user, caplog):
    _checked("apse", 1, admin_user)
    caplog.set_level("INFO")

    call_command("export_checked_photos", str(tmp_path / "quiet"), "--register", stdout=StringIO())
    quiet = [record.getMessage() for record in caplog.records]
    caplog.clear()
    call_command("export_checked_photos", str(tmp_path / "verbose"), "--verbosity", "2", stdout=StringIO())
    verbose = [record.getMessage() for record in caplog.records]

    assert not any("exported 1 checked photos" in message or "registered from" in message for message in quiet)
    assert any(message.startswith("exported 1 checked photos to ") for message in verbose)


def test_command_names_classes_nobody_checked(tmp_path, admin_user):
    _checked("apse", 1, admin_user)
    _checked("apse", 2, admin_user)
    output = StringIO()

    call_command("export_checked_photos", str(tmp_path / "checked"), "--register", stdout=output)

    text = output.getvalue()
    assert "Classes with no image in train/: altar, bell_tower," in text
    assert "not ready: a class lacks images in one split" in text
    assert not Dataset.objects.get().is_complete


def test_command_warns_about_single_photo_class(tmp_path, admin_user):
    _checked("apse", 1, admin_user)
    output = StringIO()

    call_command("export_checked_photos", str(tmp_path / "checked"), stdout=output)

    assert "Classes with no image in test/: apse. A class needs two checked photos" in output.getvalue()
    assert f"Register it with: .venv/bin/python manage.py import_dataset {tmp_path / 'checked'}" in output.getvalue()


def test_command_reports_error(tmp_path):
    with pytest.raises(CommandError, match="no checked photo to export"):
        call_command("export_checked_photos", str(tmp_path / "checked"))


def test_export_links_base_dataset(tmp_path, admin_user, dataset_folder):
    checked = _checked("apse", 1, admin_user)
    output = StringIO()

    call_command(
        "export_checked_photos",
        str(tmp_path / "merged"),
        "--base-dataset",
        str(dataset_folder),
        "--register",
        stdout=output,
    )

    folder = tmp_path / "merged"
    linked = sorted((folder / "train" / "apse").glob("base-*"))
    text = output.getvalue()
    dataset = Dataset.objects.get()
    assert linked
    assert all(path.is_symlink() for path in linked)
    assert linked[0].resolve().parent == (dataset_folder / "train" / "apse").resolve()
    assert (folder / "train" / "apse" / f"{checked.pk}.jpg").is_file()
    assert "class                  train    test  base train  base test" in text
    assert dataset.counts["train"]["apse"] == len(linked) + 1
    assert "Classes with no image in test/" not in text


def test_export_rejects_base_without_splits(tmp_path, admin_user):
    _checked("apse", 1, admin_user)
    (tmp_path / "base" / "train").mkdir(parents=True)

    with pytest.raises(classifier_services.CheckedExportError, match="needs train/<class>/ and test/<class>/"):
        classifier_services.checked_photos_export(tmp_path / "out", base_dataset=tmp_path / "base")

    assert not (tmp_path / "out").exists()


def test_export_names_base_classes_outside_model(tmp_path, admin_user):
    _checked("apse", 1, admin_user)
    _checked("apse", 2, admin_user)
    base = tmp_path / "base"
    (base / "train" / "chimney").mkdir(parents=True)
    (base / "test").mkdir()
    (base / "train" / "chimney" / "a.png").write_bytes(make_image_bytes("PNG", (40, 30)))
    output = StringIO()

    call_command("export_checked_photos", str(tmp_path / "out"), "--base-dataset", str(base), stdout=output)

    text = output.getvalue()
    assert "Classes of the base dataset that the active model does not have: chimney." in text
    assert "Classes with no image in test/: chimney." in text


def test_export_rejects_missing_base(tmp_path, admin_user):
    _checked("apse", 1, admin_user)

    with pytest.raises(classifier_services.CheckedExportError, match="base dataset not found"):
        classifier_services.checked_photos_export(tmp_path / "out", base_dataset=tmp_path / "missing")
