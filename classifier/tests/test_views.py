"""HTML pages and image files, checked as an admin, the uploader and an anonymous visitor."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from classifier import services
from classifier.models import Prediction, Upload
from classifier.templatetags.element_names import element_name
from conftest import make_image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clear_throttle_counters():
    cache.clear()


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner", password="owner-password")


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0xA431] = "SERIAL-55555"
    buffer = io.BytesIO()
    Image.new("RGB", (60, 40), (120, 80, 40)).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def _done(upload: Upload, label: str = "apse") -> Upload:
    Prediction.objects.filter(pk=upload.latest_prediction_id).update(
        status=Prediction.Status.DONE, label=label, probabilities={label: 0.9, "vault": 0.1}
    )
    return upload


def test_upload_page_has_form_and_script(client):
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert 'type="file"' in html
    assert "multiple" in html
    assert "js/upload.js" in html
    # Everything is served by the site itself: no script or style from another host.
    # (A plain "cdn" substring check failed whenever the random CSRF token contained it.)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "page loads an asset from another host"


def test_form_post_without_javascript_redirects_to_results(client):
    files = [
        SimpleUploadedFile("one.jpg", make_image_bytes("JPEG", (50, 40))),
        SimpleUploadedFile("two.png", make_image_bytes("PNG", (30, 30))),
        SimpleUploadedFile("bad.jpg", b"not an image"),
    ]

    response = client.post("/", {"file": files}, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain[0][0].startswith("/uploads/results/?ids=")
    html = response.content.decode()
    assert "one.jpg" in html
    assert "two.png" in html
    assert "“bad.jpg” is not an image" in html
    assert 'http-equiv="refresh"' in html
    assert Upload.objects.count() == 2


def test_results_page_warns_about_small_photo(client):
    small = _done(services.upload_create(name="small.png", data=make_image_bytes("PNG", (24, 20))))
    large = _done(services.upload_create(name="large.png", data=make_image_bytes("PNG", (64, 48))))

    html = client.get(f"/uploads/results/?ids={small.pk},{large.pk}").content.decode()

    assert html.count("too small for a reliable prediction") == 1


def test_results_page_keeps_rejections_on_reload(client):
    files = [SimpleUploadedFile("one.jpg", make_image_bytes("JPEG")), SimpleUploadedFile("bad.jpg", b"text")]
    results_url = client.post("/", {"file": files})["Location"]

    first = client.get(results_url).content.decode()
    reload = client.get(results_url).content.decode()
    stranger = Client().get(results_url).content.decode()

    assert "1 file not uploaded" in first
    assert "“bad.jpg” is not an image" in reload
    assert "bad.jpg" not in stranger


def test_form_post_over_file_limit_shows_message(client, settings):
    settings.UPLOAD_MAX_FILES = 2
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    files = [SimpleUploadedFile(f"{index}.jpg", make_image_bytes("JPEG")) for index in range(4)]

    response = client.post("/", {"file": files}, follow=True)

    assert response.redirect_chain == [("/", 302)]
    assert "Too many files in one request: upload at most 2 per request." in response.content.decode()
    assert not Upload.objects.exists()


def test_results_page_hides_names_from_others(client):
    files = [SimpleUploadedFile("private-name.jpg", make_image_bytes("JPEG", (50, 40)))]
    results_url = client.post("/", {"file": files})["Location"]
    upload = Upload.objects.get()

    own_page = client.get(results_url).content.decode()
    stranger_page = Client().get(results_url).content.decode()

    assert "private-name.jpg" in own_page
    assert "private-name.jpg" not in stranger_page
    assert f"Photo {upload.pk}" in stranger_page


def test_form_post_all_rejected_shows_reasons(client):
    response = client.post("/", {"file": [SimpleUploadedFile("empty.jpg", b"")]})

    assert response.status_code == 400
    assert "“empty.jpg” is empty" in response.content.decode()


def test_form_post_throttled_for_anonymous(client):
    for index in range(5):
        client.post("/", {"file": [SimpleUploadedFile("a.jpg", make_image_bytes("JPEG", (50 + index, 40)))]})

    response = client.post("/", {"file": [SimpleUploadedFile("a.jpg", make_image_bytes("JPEG"))]})

    assert response.status_code == 429
    assert "the limit is 5 uploads per minute for visitors who are not logged in" in response.content.decode()


def test_form_post_without_files_is_not_throttled(client):
    for _ in range(6):
        assert client.post("/", {}).status_code == 400

    response = client.post("/", {"file": [SimpleUploadedFile("a.jpg", make_image_bytes("JPEG"))]})

    assert response.status_code == 302


def test_results_page_stops_refreshing_when_done(client):
    upload = _done(services.upload_create(name="a.jpg", data=make_image_bytes()))

    html = client.get(f"/uploads/results/?ids={upload.pk}").content.decode()

    assert "apse" in html
    assert 'http-equiv="refresh"' not in html


def test_gallery_newest_first_and_filter(client):
    older = _done(services.upload_create(name="a.jpg", data=make_image_bytes("JPEG", (50, 40))), "apse")
    newer = _done(services.upload_create(name="b.jpg", data=make_image_bytes("JPEG", (51, 40))), "vault")

    page = client.get("/gallery/").content.decode()
    filtered = client.get("/gallery/", {"label": "apse"}).content.decode()

    assert page.index(f"/images/{newer.pk}/") < page.index(f"/images/{older.pk}/")
    assert f"/images/{older.pk}/" in filtered
    assert f"/images/{newer.pk}/" not in filtered


def test_gallery_paginates(client, settings):
    settings.GALLERY_PAGE_SIZE = 2
    for index in range(3):
        services.upload_create(name="a.jpg", data=make_image_bytes("JPEG", (50 + index, 40)))

    first = client.get("/gallery/").content.decode()
    second = client.get("/gallery/", {"page": 2}).content.decode()

    assert "Page 1 of 2" in first
    assert "Page 2 of 2" in second


def test_gallery_leaves_out_hidden(client):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes())
    services.upload_set_hidden(upload, hidden=True)

    assert f"/images/{upload.pk}/" not in client.get("/gallery/").content.decode()


def test_detail_shows_all_probabilities_and_version(client, active_model):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes())
    Prediction.objects.filter(pk=upload.latest_prediction_id).update(
        status=Prediction.Status.DONE,
        label="apse",
        probabilities=dict.fromkeys(active_model.class_names, 0.1),
        model_version=active_model,
    )

    html = client.get(f"/images/{upload.pk}/").content.decode()

    for name in active_model.class_names:
        assert f'<span class="probability-label">{element_name(name)}</span>' in html
    assert '<span class="probability-label">inner dome</span>' in html
    assert active_model.version in html
    assert "Download the original" not in html


@pytest.mark.parametrize(("size", "warned"), [((20, 300), True), ((32, 32), False)])
def test_detail_warns_about_tiny_photo(client, active_model, size, warned):
    upload = _done(services.upload_create(name="a.png", data=make_image_bytes("PNG", size)))

    html = client.get(f"/images/{upload.pk}/").content.decode()

    assert ('id="small-photo"' in html) == warned


def test_public_copy_has_no_exif(client):
    upload = services.upload_create(name="camera.jpg", data=_exif_jpeg())

    display = b"".join(client.get(f"/images/{upload.pk}/display.jpg").streaming_content)
    thumbnail = b"".join(client.get(f"/images/{upload.pk}/thumbnail.jpg").streaming_content)

    assert display.startswith(b"\xff\xd8")
    assert thumbnail.startswith(b"\xff\xd8")
    assert b"SERIAL-55555" not in display
    assert b"SERIAL-55555" not in thumbnail


def test_original_only_for_owner_and_staff(client, owner, owner_client, admin_client):
    upload = services.upload_create(name="camera.jpg", data=_exif_jpeg(), owner=owner)
    url = f"/images/{upload.pk}/original"

    assert client.get(url).status_code == 404
    owner_response = owner_client.get(url)
    assert owner_response.status_code == 200
    assert b"SERIAL-55555" in b"".join(owner_response.streaming_content)
    assert owner_response["Cache-Control"] == "private, no-store"
    assert admin_client.get(url).status_code == 200


def test_original_and_hidden_files_open_with_api_token(client, owner, admin_user):
    from rest_framework.authtoken.models import Token

    upload = services.upload_create(name="camera.jpg", data=_exif_jpeg(), owner=owner)
    services.upload_set_hidden(upload, hidden=True)
    owner_token = Token.objects.create(user=owner).key
    staff_token = Token.objects.create(user=admin_user).key

    for path in ("", "original", "display.jpg", "thumbnail.jpg"):
        url = f"/images/{upload.pk}/{path}"
        assert client.get(url).status_code == 404, path
        assert client.get(url, HTTP_AUTHORIZATION="Token not-a-token").status_code == 404, path
        assert client.get(url, HTTP_AUTHORIZATION=f"Token {owner_token}").status_code == 200, path
        assert client.get(url, HTTP_AUTHORIZATION=f"Token {staff_token}").status_code == 200, path


def test_hidden_detail_404_for_public(client, admin_client):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes())
    services.upload_set_hidden(upload, hidden=True)

    assert client.get(f"/images/{upload.pk}/").status_code == 404
    assert client.get(f"/images/{upload.pk}/thumbnail.jpg").status_code == 404
    assert admin_client.get(f"/images/{upload.pk}/").status_code == 200


def test_staff_hide_and_predict_buttons(client, owner, owner_client, admin_client):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes())
    own = services.upload_create(name="own.jpg", data=make_image_bytes("JPEG", (41, 30)), owner=owner)

    assert client.post(f"/images/{upload.pk}/hide/", {"hidden": "1"})["Location"].startswith("/accounts/login/")
    assert owner_client.post(f"/images/{upload.pk}/hide/", {"hidden": "1"}).status_code == 404
    assert Upload.objects.get(pk=upload.pk).is_hidden is False
    assert 'id="hide-button"' in owner_client.get(f"/images/{own.pk}/").content.decode()
    assert 'id="hide-button"' not in owner_client.get(f"/images/{upload.pk}/").content.decode()
    assert owner_client.post(f"/images/{own.pk}/hide/", {"hidden": "1"}).status_code == 302
    assert Upload.objects.get(pk=own.pk).is_hidden is True

    admin_client.post(f"/images/{upload.pk}/hide/", {"hidden": "1"})
    admin_client.post(f"/images/{upload.pk}/predict/")

    assert Upload.objects.get(pk=upload.pk).is_hidden is True
    assert upload.predictions.count() == 2


def test_hide_button_rejects_unknown_value(admin_client):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes())
    services.upload_set_hidden(upload, hidden=True)

    response = admin_client.post(f"/images/{upload.pk}/hide/", {"hidden": "maybe"}, follow=True)

    assert "Nothing was changed: the form must send hidden=1 to hide or hidden=0 to show." in response.content.decode()
    assert Upload.objects.get(pk=upload.pk).is_hidden is True


def test_admin_hide_action_counts_images(admin_client):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes())

    response = admin_client.post(
        "/admin/classifier/upload/", {"action": "hide", "_selected_action": [upload.pk]}, follow=True
    )

    assert "1 image hidden." in response.content.decode()
    assert Upload.objects.get(pk=upload.pk).is_hidden is True


def test_empty_gallery_messages(client, owner_client):
    mine = owner_client.get("/gallery/?mine=1&checked=no").content.decode()
    checked = client.get("/gallery/?checked=yes&label=apse").content.decode()

    assert "You have no unchecked uploads yet. <a" in mine
    assert "No checked photos predicted as apse yet.</p>" in checked


def test_my_uploads_mark_hidden_photos(owner, owner_client):
    hidden = services.upload_create(name="a.jpg", data=make_image_bytes(size=(38, 20)), owner=owner)
    services.upload_create(name="b.jpg", data=make_image_bytes(size=(39, 20)), owner=owner)
    services.upload_set_hidden(hidden, hidden=True)

    page = owner_client.get("/gallery/?mine=1").content.decode()

    assert page.count("hidden from the public</span>") == 1


def test_login_keeps_username_after_wrong_password(client, owner):
    page = client.post("/accounts/login/", {"username": "owner-name", "password": "wrong"}).content.decode()

    assert 'value="owner-name"' in page


def test_login_page_says_how_to_get_account(client, settings):
    without = client.get("/accounts/login/").content.decode()
    settings.CONTACT_EMAIL = "archive@example.org"
    with_contact = client.get("/accounts/login/").content.decode()

    assert "Uploading needs no account." in without
    assert "created by the site's staff." in without
    assert "mailto:" not in without
    assert 'write to <a href="mailto:archive@example.org">archive@example.org</a>' in with_contact


def test_admin_retries_failed_predictions(admin_client):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes())
    Prediction.objects.filter(pk=upload.latest_prediction_id).update(status=Prediction.Status.FAILED, error="boom")

    response = admin_client.post(
        "/admin/classifier/prediction/",
        {"action": "retry", "_selected_action": [upload.latest_prediction_id]},
        follow=True,
    )

    assert response.status_code == 200
    upload.refresh_from_db()
    assert upload.latest_prediction.status == Prediction.Status.PENDING
    assert upload.predictions.count() == 2


def test_admin_activates_model_version(admin_client, active_model, tmp_path):
    from ml.testing import make_tiny_checkpoint

    other = services.model_version_register(model_dir=make_tiny_checkpoint(tmp_path / "m"), version="candidate")

    admin_client.post("/admin/classifier/modelversion/", {"action": "activate", "_selected_action": [other.pk]})

    other.refresh_from_db()
    active_model.refresh_from_db()
    assert other.is_active is True
    assert active_model.is_active is False


def test_admin_refuses_to_activate_missing_folder(admin_client, active_model, tmp_path):
    from ml.testing import make_tiny_checkpoint

    folder = make_tiny_checkpoint(tmp_path / "gone")
    other = services.model_version_register(model_dir=folder, version="gone")
    (folder / "model.safetensors").unlink()

    response = admin_client.post(
        "/admin/classifier/modelversion/", {"action": "activate", "_selected_action": [other.pk]}, follow=True
    )

    other.refresh_from_db()
    active_model.refresh_from_db()
    assert f"Model version gone cannot serve predictions: weights file not found: {folder}" in (
        response.content.decode()
    )
    assert other.is_active is False
    assert active_model.is_active is True


def test_admin_add_model_version_reads_model_json(admin_client, active_model, tmp_path):
    from ml.testing import make_tiny_checkpoint

    folder = make_tiny_checkpoint(tmp_path / "new")

    (tmp_path / "empty").mkdir()

    def add(model_dir, version=""):
        return admin_client.post("/admin/classifier/modelversion/add/", {"model_dir": model_dir, "version": version})

    absent = add(str(tmp_path / "absent"))
    relative = add("models/new")
    empty = add(str(tmp_path / "empty"))
    added = add(str(folder), "new-1")
    same_name = add(str(make_tiny_checkpoint(tmp_path / "other")), "new-1")
    same_folder = add(str(folder), "new-2")

    assert absent.status_code == 200
    assert f"Folder not found on the server: {tmp_path / 'absent'}." in absent.content.decode()
    assert "Give the folder&#x27;s absolute path, such as /srv/models/new." in relative.content.decode()
    assert "This folder cannot serve predictions: model description not found:" in empty.content.decode()
    assert added.status_code == 302
    version = services.ModelVersion.objects.get(version="new-1")
    assert version.class_names == json.loads((folder / "model.json").read_text())["class_names"]
    assert version.is_active is False
    assert "Model version new-1 is registered already. Give another name." in same_name.content.decode()
    assert "This folder is registered already, as model version new-1." in same_folder.content.decode()


def test_public_error_hides_model_paths(client, admin_client):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes())
    reason = "the model could not be loaded: model description not found: /srv/models/x/model.json"
    Prediction.objects.filter(pk=upload.latest_prediction_id).update(status=Prediction.Status.FAILED, error=reason)

    public = client.get(f"/images/{upload.pk}/").content.decode()
    public_api = client.get(f"/api/v1/images/{upload.pk}/").json()
    staff = admin_client.get(f"/images/{upload.pk}/").content.decode()

    assert "/srv/models" not in public
    assert "the model could not be loaded, so staff have to fix or replace it" in public
    assert public_api["error"].startswith("the model could not be loaded, so staff")
    assert "/srv/models/x/model.json" in staff
    public_csv = b"".join(client.get("/gallery/export.csv").streaming_content).decode()
    staff_csv = b"".join(admin_client.get("/gallery/export.csv").streaming_content).decode()
    assert "/srv/models" not in public_csv
    assert "the model could not be loaded, so staff have to fix or replace it" in public_csv
    assert "/srv/models/x/model.json" in staff_csv


def test_not_found_pages_use_site_layout(client):
    unknown_photo = client.get("/images/99999/")
    unknown_page = client.get("/no-such-page/")

    assert unknown_photo.status_code == 404
    assert "Heritage Lens" in unknown_photo.content.decode()
    assert "Back to the gallery" in unknown_photo.content.decode()
    assert (
        "<p>Photo 99999 not found: it does not exist, or it is hidden from the public.</p>"
        in unknown_photo.content.decode()
    )
    assert "There is no page at this address." in unknown_page.content.decode()


def test_server_error_page_renders_without_context():
    from django.template import loader

    html = loader.get_template("500.html").render({})

    assert "Something went wrong on the server" in html
    assert "css/site" in html


def test_favicon_served(client):
    from django.contrib.staticfiles import finders

    redirect = client.get("/favicon.ico")
    page = client.get("/").content.decode()

    assert redirect.status_code == 301
    assert redirect["Location"] == "/static/favicon.svg"
    assert finders.find("favicon.svg") is not None
    assert 'rel="icon" href="/static/favicon.svg"' in page


def test_health_endpoint(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def _csv(response) -> list[dict[str, str]]:
    import csv

    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_gallery_export_lists_public_photos_with_probabilities(client, owner):
    public = _done(services.upload_create(name="=HYPERLINK(1).jpg", data=make_image_bytes(size=(31, 20)), owner=owner))
    hidden = services.upload_create(name="b.jpg", data=make_image_bytes(size=(32, 20)), owner=owner)
    services.upload_set_hidden(hidden, hidden=True)

    response = client.get("/gallery/export.csv")
    rows = _csv(response)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="heritage-lens-gallery.csv"' in response["Content-Disposition"]
    assert [int(row["id"]) for row in rows] == [public.pk]
    assert "file" not in rows[0]
    assert "hidden" not in rows[0]
    assert rows[0]["label"] == "apse"
    assert rows[0]["p_apse"] == "0.900000"
    assert rows[0]["confidence"] == "0.900000"
    assert rows[0]["page_url"] == f"http://testserver/images/{public.pk}/"


def test_gallery_export_rejects_unknown_filters(client):
    response = client.get("/gallery/export.csv?label=bad&checked=maybe&mine=2&order=oldest")

    lines = response.content.decode().splitlines()
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain"
    assert lines[0].startswith("Invalid label filter “bad”: use a class of the active model (altar, apse, ")
    assert lines[1] == "Invalid checked filter “maybe”: use yes or no (also true/false, 1/0, on/off)."
    assert lines[2] == "Invalid mine filter “2”: use 1 or 0 (also yes/no, true/false, on/off)."
    assert lines[3] == "Invalid order filter “oldest”: use newest or confidence."
    assert client.get("/gallery/export.csv?label=apse&checked=No&mine=0&order=confidence").status_code == 200


def test_gallery_export_rejects_bad_token(client):
    for query in ("", "?mine=1"):
        response = client.get(f"/gallery/export.csv{query}", HTTP_AUTHORIZATION="Token bogus")

        assert response.status_code == 401, query
        assert response.content.decode() == "Invalid token."
        assert response["WWW-Authenticate"] == "Token"


def test_gallery_mine_filter_notice(client):
    page = client.get("/gallery/?mine=maybe").content.decode()

    assert "“maybe” is not a value of the mine filter (use 1 or 0), so every photo is shown." in page


def test_gallery_export_mine_adds_hidden_uploads_and_names(client, owner, owner_client):
    from rest_framework.authtoken.models import Token

    formula = services.upload_create(name="=HYPERLINK(1).jpg", data=make_image_bytes(size=(33, 20)), owner=owner)
    hidden = services.upload_create(name="b.jpg", data=make_image_bytes(size=(34, 20)), owner=owner)
    services.upload_set_hidden(hidden, hidden=True)
    services.upload_create(name="someone-else.jpg", data=make_image_bytes(size=(35, 20)))
    token = Token.objects.create(user=owner).key

    rows = _csv(owner_client.get("/gallery/export.csv?mine=1"))
    for spelling in ("true", "yes", "TRUE"):
        assert _csv(owner_client.get(f"/gallery/export.csv?mine={spelling}")) == rows, spelling
    token_rows = _csv(client.get("/gallery/export.csv?mine=1", HTTP_AUTHORIZATION=f"Token {token}"))
    forbidden = client.get("/gallery/export.csv?mine=1")

    assert [(int(row["id"]), row["file"]) for row in rows] == [(hidden.pk, "b.jpg"), (formula.pk, "'=HYPERLINK(1).jpg")]
    assert [row["hidden"] for row in rows] == ["yes", "no"]
    assert rows[0]["status"] == "pending"
    assert rows[0]["label"] == ""
    assert token_rows == rows
    assert forbidden.status_code == 401
    assert forbidden["WWW-Authenticate"] == "Token"
    assert b"Log in, or send an API token" in forbidden.content


def test_gallery_mine_filter_for_logged_in_users(client, owner, owner_client):
    own = services.upload_create(name="a.jpg", data=make_image_bytes(size=(36, 20)), owner=owner)
    services.upload_set_hidden(own, hidden=True)
    other = services.upload_create(name="b.jpg", data=make_image_bytes(size=(37, 20)))

    mine_page = owner_client.get("/gallery/?mine=1").content.decode()
    anonymous_page = client.get("/gallery/?mine=1").content.decode()

    assert "<h1>My uploads</h1>" in mine_page
    assert f"/images/{own.pk}/thumbnail.jpg" in mine_page
    assert f"/images/{other.pk}/thumbnail.jpg" not in mine_page
    assert 'href="/gallery/export.csv?mine=1"' in mine_page
    assert "<h1>Gallery</h1>" in anonymous_page
    assert 'name="mine"' not in anonymous_page


def test_delete_page_confirms_then_deletes(client, owner, owner_client, admin_client):
    upload = services.upload_create(name="portal.jpg", data=make_image_bytes(size=(38, 20)), owner=owner)
    url = f"/images/{upload.pk}/delete/"

    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    confirm = owner_client.get(url).content.decode()
    assert "Delete photo" in confirm
    assert "portal.jpg" in confirm
    assert f'href="{url}"' in owner_client.get(f"/images/{upload.pk}/").content.decode()
    assert Upload.objects.filter(pk=upload.pk).exists()

    response = owner_client.post(url)

    assert response.status_code == 302
    assert response["Location"] == "/gallery/?mine=1"
    assert not Upload.objects.filter(pk=upload.pk).exists()
    assert admin_client.get(f"/images/{upload.pk}/").status_code == 404


def test_staff_delete_redirects_to_gallery(owner, admin_client):
    upload = services.upload_create(name="portal.jpg", data=make_image_bytes(size=(39, 20)), owner=owner)

    response = admin_client.post(f"/images/{upload.pk}/delete/")

    assert response["Location"] == "/gallery/"
    assert not Upload.objects.filter(pk=upload.pk).exists()


def test_admin_delete_action_removes_unshared_files(admin_client, django_capture_on_commit_callbacks):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes(size=(40, 20)))
    original = upload.stored_image.original.name

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/classifier/upload/", {"action": "delete_selected", "_selected_action": [upload.pk], "post": "yes"}
        )

    assert response.status_code == 302
    assert not Upload.objects.filter(pk=upload.pk).exists()
    assert not default_storage.exists(original)


def test_upload_page_states_hourly_limit(client, owner_client):
    anonymous_page = client.get("/").content.decode()
    owner_page = owner_client.get("/").content.decode()

    assert "Limit: 5 uploads per minute for visitors who are not logged in." in anonymous_page
    assert "Limit: 1000 uploads per minute." in owner_page
    assert '<span class="js-only" hidden>This page sends each photo as one upload.</span>' in owner_page


def test_gallery_explains_ignored_filters(client):
    page = client.get("/gallery/?mine=1&label=nave").content.decode()

    assert "to see your own uploads. This is the public gallery." in page
    assert 'href="/accounts/login/?next=' in page
    assert "“nave” is not a class of the active model, so every photo is shown." in page
    assert "<h1>Gallery</h1>" in page


def test_admin_model_versions_show_scores(admin_client, active_model):
    page = admin_client.get("/admin/classifier/modelversion/").content.decode()

    assert "Heritage Lens administration" in page
    assert "Scores" in page
    assert "Model folder" in page
    folder = Path(active_model.model_dir)
    assert f'<span title="{folder}">…/{folder.parent.name}/{folder.name}</span>' in page


@pytest.mark.parametrize(
    ("metrics", "shown"),
    [
        ({"val": {"macro_f1": 0.96}, "test": {"macro_f1": 0.9}, "training_job": 3}, "test macro-F1 0.900"),
        ({"val": {"accuracy": 0.96, "macro_f1": 0.95}}, "validation macro-F1 0.950"),
        ({"val": {"macro_f1": 0.95}, "test": {"accuracy": 0.97, "macro_f1": 0.967}}, "test macro-F1 0.967"),
        ({}, "-"),
    ],
)
def test_admin_model_version_scores_column(metrics, shown):
    from django.contrib import admin

    from classifier.admin import ModelVersionAdmin
    from classifier.models import ModelVersion

    column = ModelVersionAdmin(ModelVersion, admin.site)

    assert column.scores(ModelVersion(metrics=metrics)) == shown


def test_staff_confirms_and_corrects_label(client, owner_client, admin_client):
    upload = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(35, 20))))

    page = admin_client.get(f"/images/{upload.pk}/").content.decode()
    assert "Confirm apse</button>" in page
    assert owner_client.post(f"/images/{upload.pk}/label/", {"label": "apse"}).status_code == 403
    assert Upload.objects.get(pk=upload.pk).verified_label == ""

    admin_client.post(f"/images/{upload.pk}/label/", {"label": "apse"})
    confirmed = client.get(f"/images/{upload.pk}/").content.decode()
    saved = admin_client.post(f"/images/{upload.pk}/label/", {"label": "vault"}, follow=True).content.decode()
    corrected = client.get(f"/images/{upload.pk}/").content.decode()
    rejected = admin_client.post(f"/images/{upload.pk}/label/", {"label": "chapel"}, follow=True).content.decode()

    assert "Checked by staff: <strong>apse</strong>, as predicted." in confirmed
    assert "Checked by staff: <strong>vault</strong>, not the predicted apse." in corrected
    assert f"Checked label of photo {upload.pk} saved: vault." in saved
    assert f"<h1>Photo {upload.pk}: vault</h1>" in corrected
    assert "The label was not saved: label &#x27;chapel&#x27; is not a class of the active model" in rejected
    assert Upload.objects.get(pk=upload.pk).verified_label == "vault"
    assert 'name="label"' not in client.get(f"/images/{upload.pk}/").content.decode()


def test_gallery_export_has_verified_label(client, admin_user):
    checked = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(36, 20))))
    unchecked = _done(services.upload_create(name="b.jpg", data=make_image_bytes(size=(37, 20))))
    services.upload_set_verified_label(checked, label="vault", user=admin_user)

    rows = {int(row["id"]): row for row in _csv(client.get("/gallery/export.csv"))}

    assert rows[checked.pk]["verified_label"] == "vault"
    assert rows[checked.pk]["label"] == "apse"
    assert rows[unchecked.pk]["verified_label"] == ""


def test_admin_confirms_predicted_labels(admin_client):
    done = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(38, 20))))
    pending = services.upload_create(name="b.jpg", data=make_image_bytes(size=(39, 20)))

    response = admin_client.post(
        "/admin/classifier/upload/",
        {"action": "confirm_predicted_label", "_selected_action": [done.pk, pending.pk]},
        follow=True,
    )

    assert "1 label confirmed. 1 image skipped" in response.content.decode()
    assert Upload.objects.get(pk=done.pk).verified_label == "apse"
    assert Upload.objects.get(pk=pending.pk).verified_label == ""


def test_gallery_filters_checked_photos(client, admin_user):
    checked = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(40, 21))))
    unchecked = _done(services.upload_create(name="b.jpg", data=make_image_bytes(size=(41, 21))))
    services.upload_set_verified_label(checked, label="apse", user=admin_user)

    only_checked = client.get("/gallery/?checked=yes").content.decode()
    only_unchecked = client.get("/gallery/?checked=no").content.decode()
    unknown = client.get("/gallery/?checked=maybe").content.decode()
    export = _csv(client.get("/gallery/export.csv?checked=no"))

    assert f'href="/images/{checked.pk}/"' in only_checked
    assert f'href="/images/{unchecked.pk}/"' not in only_checked
    assert 'apse<span class="gallery-checked" title="Checked by staff"> ✓</span>' in only_checked
    assert f'href="/images/{unchecked.pk}/"' in only_unchecked
    assert f'href="/images/{checked.pk}/"' not in only_unchecked
    assert 'href="/gallery/export.csv?checked=no"' in only_unchecked
    assert f'href="/images/{checked.pk}/"' in unknown
    assert f'href="/images/{unchecked.pk}/"' in unknown
    assert [int(row["id"]) for row in export] == [unchecked.pk]


def test_gallery_caption_shows_checked_label(client, admin_user):
    corrected = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(42, 21))))
    services.upload_set_verified_label(corrected, label="vault", user=admin_user)

    page = client.get("/gallery/").content.decode()

    assert (
        'vault<span class="gallery-checked" title="Checked by staff"> ✓</span>'
        '<span class="gallery-predicted">predicted apse</span>'
    ) in page


def test_admin_confirm_keeps_existing_labels(admin_client, admin_user):
    corrected = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(43, 21))))
    services.upload_set_verified_label(corrected, label="vault", user=admin_user)

    response = admin_client.post(
        "/admin/classifier/upload/",
        {"action": "confirm_predicted_label", "_selected_action": [corrected.pk]},
        follow=True,
    )

    assert "0 labels confirmed. 1 already checked, left as they were." in response.content.decode()
    assert Upload.objects.get(pk=corrected.pk).verified_label == "vault"


def test_admin_filters_uploads_by_checked_label(admin_client, admin_user):
    checked = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(44, 21))))
    unchecked = _done(services.upload_create(name="b.jpg", data=make_image_bytes(size=(45, 21))))
    services.upload_set_verified_label(checked, label="dome(inner)", user=admin_user)

    listing = admin_client.get("/admin/classifier/upload/").content.decode()
    not_checked = admin_client.get("/admin/classifier/upload/?checked_label=-").context["cl"].result_list
    inner_dome = admin_client.get("/admin/classifier/upload/?checked_label=dome(inner)").context["cl"].result_list

    predicted_apse = admin_client.get("/admin/classifier/upload/?predicted_label=apse").context["cl"].result_list
    assert ">Not checked</a>" in listing
    assert "By hidden" in listing
    assert sorted(upload.pk for upload in predicted_apse) == sorted([checked.pk, unchecked.pk])
    assert ">inner dome</a>" in listing
    assert [upload.pk for upload in not_checked] == [unchecked.pk]
    assert [upload.pk for upload in inner_dome] == [checked.pk]


def test_gallery_checked_filter_spellings(client, admin_user):
    checked = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(46, 21))))
    unchecked = _done(services.upload_create(name="b.jpg", data=make_image_bytes(size=(47, 21))))
    services.upload_set_verified_label(checked, label="apse", user=admin_user)

    for spelling in ("true", "1", "Yes", "on"):
        assert [int(row["id"]) for row in _csv(client.get(f"/gallery/export.csv?checked={spelling}"))] == [checked.pk]
    for spelling in ("false", "0", "no", "off"):
        assert [int(row["id"]) for row in _csv(client.get(f"/gallery/export.csv?checked={spelling}"))] == [unchecked.pk]
    page = client.get("/gallery/?checked=maybe").content.decode()
    assert "“maybe” is not a value of the checked filter (use yes or no)" in page
    assert 'href="/gallery/?checked=yes"' not in client.get("/gallery/?checked=true").content.decode()
    assert 'href="/gallery/export.csv?checked=yes"' in client.get("/gallery/?checked=true").content.decode()


def test_photo_action_get_returns_to_photo(admin_client, client):
    upload = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(48, 21))))

    response = admin_client.get(f"/images/{upload.pk}/label/", follow=True)
    anonymous = client.get(f"/images/{upload.pk}/label/")

    assert response.redirect_chain == [(f"/images/{upload.pk}/", 302)]
    assert "Nothing was changed. Use the buttons on this page." in response.content.decode()
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")
    assert admin_client.put(f"/images/{upload.pk}/label/").status_code == 405
    assert Upload.objects.get(pk=upload.pk).verified_label == ""


def test_gallery_orders_least_confident_first(client):
    confident = _done(services.upload_create(name="a.jpg", data=make_image_bytes(size=(49, 21))))
    unsure = _done(services.upload_create(name="b.jpg", data=make_image_bytes(size=(50, 21))))
    pending = services.upload_create(name="c.jpg", data=make_image_bytes(size=(51, 21)))
    Prediction.objects.filter(pk=confident.latest_prediction_id).update(confidence=0.95)
    Prediction.objects.filter(pk=unsure.latest_prediction_id).update(confidence=0.41)

    page = client.get("/gallery/?order=confidence").content.decode()
    export = _csv(client.get("/gallery/export.csv?order=confidence"))
    newest = _csv(client.get("/gallery/export.csv"))

    positions = [page.index(f'href="/images/{upload.pk}/"') for upload in (unsure, confident, pending)]
    assert positions == sorted(positions)
    assert '<option value="confidence" selected>' in page
    assert '<span class="gallery-confidence">41%</span>' in page
    assert "is not an order of the gallery" not in page
    assert "“random” is not an order of the gallery" in client.get("/gallery/?order=random").content.decode()
    assert 'href="/gallery/export.csv?order=confidence"' in page
    assert [int(row["id"]) for row in export] == [unsure.pk, confident.pk, pending.pk]
    assert [int(row["id"]) for row in newest] == [pending.pk, unsure.pk, confident.pk]
