"""REST API under /api/v1/, checked as an admin, a registered user and an anonymous visitor."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from classifier import inference, services
from classifier.models import Prediction, Upload
from conftest import make_image_bytes

pytestmark = pytest.mark.django_db
IMAGES_URL = "/api/v1/images/"


@pytest.fixture(autouse=True)
def clear_throttle_counters():
    cache.clear()


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("member", password="member-password")


@pytest.fixture
def member_client(member) -> APIClient:
    client = APIClient()
    client.force_authenticate(member)
    return client


@pytest.fixture
def staff_client(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def _file(name: str, data: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data if data is not None else make_image_bytes("JPEG", (64, 48)))


def _upload(client: APIClient, *files, query: str = ""):
    return client.post(f"{IMAGES_URL}{query}", {"file": list(files)}, format="multipart")


def test_upload_single_image_returns_pending(anonymous):
    response = _upload(anonymous, _file("nave.jpg"))

    assert response.status_code == 201
    (result,) = response.json()["results"]
    assert result["status"] == "pending"
    assert result["prediction"] is None
    assert result["url"].endswith(f"/api/v1/images/{result['id']}/")
    assert Upload.objects.get(pk=result["id"]).owner is None


def test_upload_mixed_batch_keeps_order(anonymous):
    response = _upload(
        anonymous,
        _file("first.jpg"),
        _file("notes.jpg", b"not an image"),
        _file("third.PNG", make_image_bytes("PNG", (30, 30))),
        _file("empty.jpg", b""),
    )

    assert response.status_code == 201
    results = response.json()["results"]
    assert [("id" in entry) for entry in results] == [True, False, True, False]
    assert [entry["file"] for entry in results] == ["first.jpg", "notes.jpg", "third.PNG", "empty.jpg"]
    assert results[1] == {
        "file": "notes.jpg",
        "error": {"code": "not_an_image", "message": results[1]["error"]["message"]},
    }
    assert "notes.jpg" in results[1]["error"]["message"]
    assert results[3]["error"]["code"] == "empty_file"


def test_upload_all_rejected_is_400(anonymous):
    response = _upload(
        anonymous, _file("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'></svg>"), _file("b.pdf", b"%PDF-1.4\n")
    )

    assert response.status_code == 400
    codes = [entry["error"]["code"] for entry in response.json()["results"]]
    assert codes == ["unsupported_format", "unsupported_format"]


def test_upload_oversize_file_rejected(anonymous, settings):
    data = make_image_bytes("PNG", (300, 300))
    settings.UPLOAD_MAX_BYTES = len(data) - 1

    response = _upload(anonymous, _file("big.png", data))

    assert response.status_code == 400
    assert response.json()["results"][0]["error"]["code"] == "file_too_large"


def test_upload_without_files_is_400(anonymous):
    response = anonymous.post(IMAGES_URL, {}, format="multipart")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_files"


def test_upload_too_many_files_is_400(anonymous, settings):
    settings.UPLOAD_MAX_FILES = 2

    response = _upload(anonymous, _file("1.jpg"), _file("2.jpg"), _file("3.jpg"))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_files"


def test_upload_over_django_file_limit_is_json_400(anonymous, settings):
    settings.UPLOAD_MAX_FILES = 2
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3

    response = _upload(anonymous, *[_file(f"{index}.jpg") for index in range(4)])

    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "too_many_files", "message": "Too many files in one request: upload at most 2 per request."}
    }
    assert not Upload.objects.exists()


@pytest.mark.parametrize("wait", ["abc", "-1", "31"])
def test_upload_invalid_wait_is_400(anonymous, wait):
    response = _upload(anonymous, _file("a.jpg"), query=f"?wait={wait}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_wait"


@pytest.fixture
def eager_tasks(monkeypatch):
    """Run tasks inside the request once the upload commits; the end-to-end tests use a real worker."""
    from heritage_site.celery import app

    monkeypatch.setattr(inference, "_loaded", None)
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.mark.django_db(transaction=True)
def test_upload_wait_returns_prediction(anonymous, active_model, eager_tasks):
    response = _upload(anonymous, _file("nave.jpg"), query="?wait=10")

    assert response.status_code == 201
    (result,) = response.json()["results"]
    assert result["status"] == "done"
    assert result["prediction"]["model_version"] == active_model.version
    assert result["prediction"]["label"] in active_model.class_names
    assert set(result["prediction"]["probabilities"]) == set(active_model.class_names)


def test_anonymous_uploads_are_throttled(anonymous, settings):
    for _ in range(5):
        assert _upload(anonymous, _file("a.jpg")).status_code == 201

    response = _upload(anonymous, _file("a.jpg"))

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert response.json()["error"]["message"].startswith(
        "Too many uploads: the limit is 5 uploads per minute for visitors who are not logged in "
        "(log in for 1000 uploads per minute). Try again in "
    )
    assert 1 <= int(response["Retry-After"]) <= 60


def test_empty_or_overfull_post_not_throttled(anonymous, settings):
    settings.UPLOAD_MAX_FILES = 2
    for _ in range(3):
        assert anonymous.post(IMAGES_URL, {}, format="multipart").status_code == 400
        assert _upload(anonymous, _file("a.jpg"), _file("b.jpg"), _file("c.jpg")).status_code == 400

    response = _upload(anonymous, _file("a.jpg"))

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("wait", "text"), [(0.2, "Try again in 1 second."), (90, "Try again in 90 seconds."), (3556, "about 60 minutes")]
)
def test_throttle_message_names_limit_and_wait(member, wait, text):
    from django.contrib.auth.models import AnonymousUser

    from classifier.api import throttle_message

    assert text in throttle_message(AnonymousUser(), wait)
    assert "the limit is 1000 uploads per minute for each account" in throttle_message(member, wait)


def test_staff_uploads_are_not_throttled(staff_client):
    for _ in range(7):
        assert _upload(staff_client, _file("a.jpg")).status_code == 201


def test_token_auth_upload_sets_owner(member):
    client = APIClient()
    token_response = client.post("/api/v1/auth/token/", {"username": "member", "password": "member-password"})
    assert token_response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_response.json()['token']}")

    response = _upload(client, _file("mine.jpg"))

    assert response.status_code == 201
    assert Upload.objects.get(pk=response.json()["results"][0]["id"]).owner == member


def test_token_with_wrong_password_is_400(member):
    response = APIClient().post("/api/v1/auth/token/", {"username": "member", "password": "wrong"})

    assert response.status_code == 400
    assert "error" in response.json()


def test_token_requests_are_throttled_per_address(member):
    client = APIClient()
    for _ in range(10):
        assert client.post("/api/v1/auth/token/", {"username": "member", "password": "wrong"}).status_code == 400

    response = client.post("/api/v1/auth/token/", {"username": "member", "password": "member-password"})

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert response.json()["error"]["message"].startswith(
        "Too many token requests: the limit is 10 per minute for each address. Try again in "
    )
    assert 1 <= int(response["Retry-After"]) <= 60


def _uploaded(label: str | None = None, hidden: bool = False, size=(40, 30)) -> Upload:
    upload = services.upload_create(name="x.png", data=make_image_bytes("PNG", size))
    if label:
        Prediction.objects.filter(pk=upload.latest_prediction_id).update(
            status=Prediction.Status.DONE, label=label, probabilities={label: 1.0}
        )
    if hidden:
        services.upload_set_hidden(upload, hidden=True)
    return upload


def test_detail_returns_image(anonymous):
    upload = _uploaded(label="apse")

    response = anonymous.get(f"{IMAGES_URL}{upload.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == upload.pk
    assert body["status"] == "done"
    assert body["prediction"]["label"] == "apse"


def test_detail_probabilities_follow_class_order(anonymous, active_model):
    upload = services.upload_create(name="a.jpg", data=make_image_bytes("JPEG", (50, 30)))
    names = list(active_model.class_names)
    scrambled = {name: 1 / len(names) for name in reversed(names)}
    Prediction.objects.filter(pk=upload.latest_prediction_id).update(
        status=Prediction.Status.DONE, label=names[0], probabilities=scrambled, model_version=active_model
    )

    body = anonymous.get(f"{IMAGES_URL}{upload.pk}/").json()

    assert list(body["prediction"]["probabilities"]) == names


def test_original_url_only_for_uploader_and_staff(member, member_client, staff_client, django_user_model):
    upload = services.upload_create(name="mine.jpg", data=make_image_bytes("JPEG", (52, 30)), owner=member)
    other = APIClient()
    other.force_authenticate(django_user_model.objects.create_user("other", password="other-password"))
    url = f"{IMAGES_URL}{upload.pk}/"

    assert member_client.get(url).json()["original_url"].endswith(f"/images/{upload.pk}/original")
    assert staff_client.get(url).json()["original_url"].endswith(f"/images/{upload.pk}/original")
    assert other.get(url).json()["original_url"] is None
    assert APIClient().get(url).json()["original_url"] is None


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("delete", "", None),
        ("post", "hide/", {"hidden": True}),
        ("post", "label/", {"label": "apse"}),
        ("post", "predict/", None),
    ],
)
def test_image_endpoints_missing_image_404(staff_client, method, suffix, body):
    response = getattr(staff_client, method)(f"{IMAGES_URL}999999/{suffix}", body, format="json")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Image 999999 not found."}}


def test_detail_unknown_is_404(anonymous):
    response = anonymous.get(f"{IMAGES_URL}999999/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_detail_hidden_only_for_staff(anonymous, member_client, staff_client):
    upload = _uploaded(hidden=True)

    assert anonymous.get(f"{IMAGES_URL}{upload.pk}/").status_code == 404
    assert member_client.get(f"{IMAGES_URL}{upload.pk}/").status_code == 404
    assert staff_client.get(f"{IMAGES_URL}{upload.pk}/").status_code == 200


def test_list_newest_first_without_hidden(anonymous):
    older = _uploaded(size=(40, 30))
    _uploaded(hidden=True, size=(41, 30))
    newer = _uploaded(size=(42, 30))

    response = anonymous.get(IMAGES_URL)

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["results"]] == [newer.pk, older.pk]
    assert response.json()["count"] == 2


def test_list_filters_by_label(anonymous):
    apse = _uploaded(label="apse", size=(40, 30))
    _uploaded(label="vault", size=(41, 30))
    _uploaded(size=(42, 30))

    response = anonymous.get(IMAGES_URL, {"label": "apse"})

    assert [item["id"] for item in response.json()["results"]] == [apse.pk]


def test_list_unknown_label_is_400(anonymous):
    response = anonymous.get(IMAGES_URL, {"label": "spire"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "unknown class" in response.json()["error"]["message"]


def test_list_paginates(anonymous, settings):
    for index in range(settings.GALLERY_PAGE_SIZE + 2):
        _uploaded(size=(40 + index, 30))

    first = anonymous.get(IMAGES_URL).json()
    second = anonymous.get(IMAGES_URL, {"page": 2}).json()

    assert len(first["results"]) == settings.GALLERY_PAGE_SIZE
    assert len(second["results"]) == 2
    assert first["next"].endswith("page=2")


def test_models_lists_default_version(anonymous):
    response = anonymous.get("/api/v1/models/")

    assert response.status_code == 200
    (version,) = response.json()
    assert version["is_default"] is True
    assert version["is_active"] is True
    assert len(version["class_names"]) == 10


def test_schema_and_docs_pages(anonymous):
    schema = anonymous.get("/api/v1/schema/", {"format": "json"})
    docs = anonymous.get("/api/v1/docs/")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/images/" in paths
    assert "/api/v1/images/{upload_id}/" in paths
    assert "/api/v1/models/" in paths
    assert "/api/v1/auth/token/" in paths
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()


def test_hide_for_uploader_and_staff(anonymous, member, member_client, staff_client):
    upload = _uploaded()
    own = services.upload_create(name="own.png", data=make_image_bytes("PNG", (41, 30)), owner=member)
    url = f"{IMAGES_URL}{upload.pk}/hide/"

    anonymous_response = anonymous.post(url, {"hidden": True})
    assert anonymous_response.status_code == 401
    assert anonymous_response["WWW-Authenticate"] == "Token"

    forbidden = member_client.post(url, {"hidden": True})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["message"] == "Only the uploader or staff may hide or show this image."
    response = staff_client.post(url, {"hidden": True})
    own_response = member_client.post(f"{IMAGES_URL}{own.pk}/hide/", {"hidden": True})

    assert response.status_code == 200
    assert response.json()["hidden"] is True
    assert Upload.objects.get(pk=upload.pk).is_hidden is True
    assert own_response.status_code == 200
    assert Upload.objects.get(pk=own.pk).is_hidden is True


def test_hide_needs_explicit_value(staff_client):
    upload = _uploaded()
    url = f"{IMAGES_URL}{upload.pk}/hide/"

    empty = staff_client.post(url, {}, format="json")
    visible = staff_client.post(url, {"hidden": False}, format="json")

    assert empty.status_code == 400
    assert empty.json()["error"]["fields"] == {"hidden": ["This field is required."]}
    assert Upload.objects.get(pk=upload.pk).is_hidden is False
    assert visible.json()["hidden"] is False


def test_predict_again_requires_staff(member_client, staff_client):
    upload = _uploaded(label="apse")
    url = f"{IMAGES_URL}{upload.pk}/predict/"

    assert member_client.post(url).status_code == 403
    response = staff_client.post(url)

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert upload.predictions.count() == 2


def test_list_mine_includes_own_hidden_uploads(member, member_client, anonymous):
    own = services.upload_create(name="mine.jpg", data=make_image_bytes("JPEG", (53, 30)), owner=member)
    own_hidden = services.upload_create(name="hidden.jpg", data=make_image_bytes("JPEG", (54, 30)), owner=member)
    services.upload_set_hidden(own_hidden, hidden=True)
    services.upload_create(name="theirs.jpg", data=make_image_bytes("JPEG", (55, 30)))

    mine = member_client.get(f"{IMAGES_URL}?mine=true").json()
    public = member_client.get(IMAGES_URL).json()
    unauthenticated = anonymous.get(f"{IMAGES_URL}?mine=true")

    assert [image["id"] for image in mine["results"]] == [own_hidden.pk, own.pk]
    assert own_hidden.pk not in [image["id"] for image in public["results"]]
    assert unauthenticated.status_code == 401
    assert "mine=true" in unauthenticated.json()["error"]["message"]


def test_delete_image_by_uploader_only(member, member_client, staff_client, anonymous, django_user_model):
    mine = services.upload_create(name="mine.jpg", data=make_image_bytes("JPEG", (56, 30)), owner=member)
    other_user = APIClient()
    other_user.force_authenticate(django_user_model.objects.create_user("other", password="other-password"))
    url = f"{IMAGES_URL}{mine.pk}/"

    assert anonymous.delete(url).status_code == 401
    forbidden = other_user.delete(url)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["message"] == "Only the uploader or staff may delete this image."
    assert member_client.delete(url).status_code == 204
    assert member_client.get(url).status_code == 404
    assert not Upload.objects.filter(pk=mine.pk).exists()
    assert staff_client.delete(url).status_code == 404


def test_staff_delete_anonymous_upload(staff_client, anonymous):
    upload = services.upload_create(name="anon.jpg", data=make_image_bytes("JPEG", (57, 30)))

    assert staff_client.delete(f"{IMAGES_URL}{upload.pk}/").status_code == 204
    assert not Upload.objects.filter(pk=upload.pk).exists()


def test_label_requires_staff_and_a_known_class(anonymous, member_client, staff_client):
    upload = _uploaded(label="apse")
    url = f"{IMAGES_URL}{upload.pk}/label/"

    assert anonymous.post(url, {"label": "apse"}).status_code == 401
    assert member_client.post(url, {"label": "apse"}).status_code == 403
    unknown = staff_client.post(url, {"label": "chapel"}, format="json")
    saved = staff_client.post(url, {"label": "vault"}, format="json")

    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "invalid_label"
    assert "'chapel' is not a class of the active model" in unknown.json()["error"]["message"]
    assert saved.status_code == 200
    assert saved.json()["verified_label"] == "vault"
    assert saved.json()["prediction"]["label"] == "apse"
    assert anonymous.get(f"{IMAGES_URL}{upload.pk}/").json()["verified_label"] == "vault"


def test_label_null_clears_it(staff_client):
    upload = _uploaded(label="apse")
    url = f"{IMAGES_URL}{upload.pk}/label/"
    staff_client.post(url, {"label": "apse"}, format="json")

    response = staff_client.post(url, {"label": None}, format="json")

    assert response.status_code == 200
    assert response.json()["verified_label"] is None
    assert Upload.objects.get(pk=upload.pk).verified_label == ""


def test_list_filters_checked_images(anonymous, admin_user):
    checked = _uploaded(label="apse", size=(41, 30))
    unchecked = _uploaded(label="apse", size=(42, 30))
    services.upload_set_verified_label(checked, label="apse", user=admin_user)

    only_checked = anonymous.get(IMAGES_URL, {"checked": "true"}).json()["results"]
    only_unchecked = anonymous.get(IMAGES_URL, {"checked": "false"}).json()["results"]
    invalid = anonymous.get(IMAGES_URL, {"checked": "maybe"})

    assert [image["id"] for image in only_checked] == [checked.pk]
    assert [image["id"] for image in only_unchecked] == [unchecked.pk]
    assert invalid.status_code == 400
    assert "checked: must be true or false" in invalid.json()["error"]["message"]


def test_list_orders_least_confident_first(anonymous):
    confident = _uploaded(label="apse", size=(43, 30))
    unsure = _uploaded(label="apse", size=(44, 30))
    Prediction.objects.filter(pk=confident.latest_prediction_id).update(confidence=0.9)
    Prediction.objects.filter(pk=unsure.latest_prediction_id).update(confidence=0.5)

    ordered = anonymous.get(IMAGES_URL, {"order": "confidence"}).json()["results"]
    invalid = anonymous.get(IMAGES_URL, {"order": "random"})

    assert [image["id"] for image in ordered] == [unsure.pk, confident.pk]
    assert [image["prediction"]["confidence"] for image in ordered] == [0.5, 0.9]
    assert invalid.status_code == 400
    assert "'random' is not an order; use newest or confidence." in invalid.json()["error"]["message"]


@pytest.mark.parametrize(
    "path", ["/api/v1/images/abc/", "/api/v1/images/-1/", "/api/v1/training-jobs/abc/", "/api/v2/"]
)
def test_unknown_api_url_gets_json_404(anonymous, path):
    response = anonymous.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"code": "not_found", "message": f"No API endpoint at {path}. The list is at /api/v1/docs/."}
    }


def test_api_url_without_slash(anonymous, staff_client):
    redirected = anonymous.get("/api/v1/images?label=apse")
    posted = staff_client.post("/api/v1/images/5/hide", {"hidden": True}, format="json")

    assert redirected.status_code == 301
    assert redirected["Location"] == "/api/v1/images/?label=apse"
    assert posted.status_code == 404
    assert posted.json()["error"]["message"] == (
        "No API endpoint at /api/v1/images/5/hide. Endpoints end with a slash: /api/v1/images/5/hide/"
    )


def test_list_rejects_bad_mine_and_page(anonymous):
    _uploaded()

    mine = anonymous.get(f"{IMAGES_URL}?mine=maybe")
    page = anonymous.get(f"{IMAGES_URL}?page=99")

    assert mine.status_code == 400
    assert mine.json()["error"]["message"] == "mine: must be true or false (also 1 or 0, yes or no, on or off)."
    assert page.status_code == 404
    assert page.json()["error"] == {
        "code": "not_found",
        "message": "Invalid page '99': use a page number from 1 to 1, or last.",
    }


def test_api_post_without_slash_skips_csrf():
    from django.test import Client

    client = Client(enforce_csrf_checks=True)

    response = client.post("/api/v1/images/5/hide", {"hidden": True}, content_type="application/json")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


def test_error_message_names_every_bad_field(anonymous):
    response = anonymous.get(f"{IMAGES_URL}?mine=maybe&checked=maybe")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "mine: must be true or false (also 1 or 0, yes or no, on or off). "
        "checked: must be true or false (also 1 or 0, yes or no, on or off)."
    )
