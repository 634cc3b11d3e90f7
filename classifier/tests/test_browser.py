"""The upload page in Debian's Chromium (Playwright), with a real Celery worker making the predictions."""

from __future__ import annotations

import base64
import os
import shutil

import pytest
from django.core.cache import cache
from django.db import connections

from conftest import make_image_bytes, require_service

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

DROP_FILE_SCRIPT = """
([name, encoded]) => {
    const binary = atob(encoded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, {type: "image/png"}));
    return transfer;
}
"""


@pytest.fixture
def browser(live_server, monkeypatch):
    """Chromium, closed before the live server stops so that no request is left running."""
    require_service(shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM), f"Chromium not found at {CHROMIUM}")
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # the test makes afterwards are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    cache.clear()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()
        # Playwright runs this code in a greenlet, where Django keeps separate
        # connections; an open one would block dropping the test database.
        connections.close_all()


def _write_photos(folder, prefix: str, count: int) -> list[str]:
    """Write `count` JPEG photos of different sizes (so different bytes) and return their paths."""
    paths = []
    for index in range(count):
        photo = folder / f"{prefix}-{index}.jpg"
        photo.write_bytes(make_image_bytes("JPEG", (60 + index, 40)))
        paths.append(str(photo))
    return paths


def test_upload_two_photos_and_browse(live_server, start_worker, active_model, browser, tmp_path):
    start_worker()
    picked = tmp_path / "Facade.JPG"
    picked.write_bytes(make_image_bytes("JPEG", (120, 90)))
    page = browser.new_page()

    page.goto(f"{live_server.url}/")
    page.evaluate("window.notReloaded = true")
    page.set_input_files("#file-input", str(picked))
    transfer = page.evaluate_handle(
        DROP_FILE_SCRIPT, ["dropped.png", base64.b64encode(make_image_bytes("PNG", (100, 80))).decode()]
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})

    page.wait_for_selector(".upload-item[data-label] >> nth=1", timeout=60_000)
    assert page.evaluate("window.notReloaded") is True
    items = page.locator(".upload-item")
    assert items.count() == 2
    assert page.locator(".upload-item .probabilities").count() == 2
    assert {items.nth(i).locator(".upload-name").inner_text() for i in range(2)} == {"Facade.JPG", "dropped.png"}
    label = items.first.get_attribute("data-label")
    assert label in active_model.class_names
    # Labels read as words ("inner dome"), not as the dataset spells them ("dome(inner)").
    list_text = page.inner_text("#upload-list")
    assert "_" not in list_text
    assert "(" not in list_text

    page.click("nav >> text=Gallery")
    assert page.locator(".gallery-item").count() == 2
    page.select_option("#label-filter", label)
    page.click("text=Filter")
    assert page.locator(".gallery-item").count() >= 1
    assert f"label={label}" in page.url.replace("%28", "(").replace("%29", ")")

    page.locator(".gallery-item a").first.click()
    page.wait_for_selector("h1:has-text('Photo')")
    assert page.locator(".probabilities li").count() == len(active_model.class_names)
    assert active_model.version in page.content()
    page.wait_for_function("() => document.querySelector('.detail-figure img').naturalWidth > 0", timeout=15_000)


def test_upload_form_works_without_javascript(live_server, active_model, browser, tmp_path):
    photo = tmp_path / "nojs.png"
    photo.write_bytes(make_image_bytes("PNG", (90, 70)))
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()

    page.goto(f"{live_server.url}/")
    page.set_input_files("#file-input", str(photo))
    page.click("button:has-text('Upload')")

    page.wait_for_url("**/uploads/results/**")
    assert "nojs.png" in page.content()
    # The results page reloads itself while the prediction is pending.
    page.goto("about:blank")
    context.close()


def test_my_uploads_filter_and_csv_download(live_server, active_model, browser, django_user_model):
    import csv
    import io

    from classifier import services

    owner = django_user_model.objects.create_user("archivist", password="archivist-password")
    own = services.upload_create(name="Portal 1.jpg", data=make_image_bytes("JPEG", (70, 50)), owner=owner)
    services.upload_set_hidden(own, hidden=True)
    services.upload_create(name="other.jpg", data=make_image_bytes("JPEG", (71, 50)))
    page = browser.new_page()

    page.goto(f"{live_server.url}/accounts/login/?next=/gallery/")
    page.fill("#id_username", "archivist")
    page.fill("#id_password", "archivist-password")
    page.click("button:has-text('Log in')")
    page.wait_for_url("**/gallery/")
    assert page.locator(".gallery-item").count() == 1
    page.check("input[name=mine]")
    page.click("text=Filter")
    page.wait_for_selector("h1:has-text('My uploads')")
    assert page.locator(".gallery-item").count() == 1
    assert page.locator(f".gallery-item a[href='/images/{own.pk}/']").count() == 1

    with page.expect_download() as download_info:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(open(download_info.value.path(), encoding="utf-8").read())))
    assert download_info.value.suggested_filename == "heritage-lens-my-uploads.csv"
    assert [(int(row["id"]), row["file"]) for row in rows] == [(own.pk, "Portal 1.jpg")]
    assert f"p_{active_model.class_names[0]}" in rows[0]


def test_upload_page_sends_more_files_than_form_limit(live_server, active_model, browser, tmp_path, settings):
    settings.UPLOAD_MAX_FILES = 2
    photos = _write_photos(tmp_path, "portal", 3)
    page = browser.new_page()

    page.goto(f"{live_server.url}/")
    page.set_input_files("#file-input", photos)

    page.wait_for_function("document.querySelectorAll('.upload-item img[src]').length === 3", timeout=30_000)
    assert page.locator(".upload-item").count() == 3
    assert page.locator(".status-rejected").count() == 0


def test_upload_page_keeps_order_and_warns_small(live_server, start_worker, active_model, browser, tmp_path):
    start_worker()
    names = ["b-portal.jpg", "a-tiny.png", "c-nave.jpg"]
    (tmp_path / names[0]).write_bytes(make_image_bytes("JPEG", (80, 60)))
    (tmp_path / names[1]).write_bytes(make_image_bytes("PNG", (20, 20)))
    (tmp_path / names[2]).write_bytes(make_image_bytes("JPEG", (81, 60)))
    page = browser.new_page()

    page.goto(f"{live_server.url}/")
    page.click("button:has-text('Upload')")
    notice = page.locator("#upload-notice")
    assert notice.is_visible()
    assert notice.inner_text().startswith("Choose one or more photos to upload")
    page.set_input_files("#file-input", [str(tmp_path / name) for name in names])

    page.wait_for_selector(".upload-item[data-label] >> nth=2", timeout=60_000)
    assert page.locator(".upload-name").all_inner_texts() == names
    assert not notice.is_visible()
    warnings = page.locator(".upload-item .message-warning")
    assert warnings.count() == 1
    assert "under 32 pixels" in warnings.inner_text()
    assert page.locator(".upload-item").nth(1).locator(".message-warning").count() == 1
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)


def test_upload_page_stops_sending_at_limit(live_server, active_model, browser, tmp_path):
    photos = _write_photos(tmp_path, "apse", 8)
    page = browser.new_page()

    page.goto(f"{live_server.url}/")
    page.set_input_files("#file-input", photos)

    page.wait_for_function("document.querySelectorAll('.upload-item progress').length === 0", timeout=30_000)
    rejected = page.locator(".status-rejected").all_inner_texts()
    assert len(rejected) == 3
    assert all(text.startswith(("Refused: the upload limit", "Not sent: the upload limit")) for text in rejected)
    assert page.locator(".upload-item img[src]").count() == 5
    # A photo that was not stored has no thumbnail, rather than an empty grey box.
    assert page.locator(".upload-item .upload-thumb:visible").count() == 5
    assert page.inner_text("#upload-notice").startswith("Too many uploads: the limit is 5 uploads per minute")


def test_staff_confirms_then_corrects_label(live_server, active_model, browser, django_user_model):
    from classifier import services
    from classifier.models import Prediction, Upload

    django_user_model.objects.create_user("curator", password="curator-password", is_staff=True)
    upload = services.upload_create(name="nave.jpg", data=make_image_bytes("JPEG", (72, 50)))
    Prediction.objects.filter(pk=upload.latest_prediction_id).update(
        status=Prediction.Status.DONE, label="apse", probabilities={"apse": 0.8, "vault": 0.2}
    )
    page = browser.new_page()

    page.goto(f"{live_server.url}/accounts/login/?next=/images/{upload.pk}/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", "curator-password")
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"**/images/{upload.pk}/")
    page.click("button:has-text('Confirm apse')")
    page.wait_for_selector("#verified-label")
    confirmed = page.inner_text("#verified-label")
    page.select_option("#verified-label-select", "vault")
    page.click("button:has-text('Save label')")
    page.wait_for_selector("#verified-label:has-text('vault')")

    assert confirmed == "Checked by staff: apse, as predicted."
    assert page.inner_text("#verified-label") == "Checked by staff: vault, not the predicted apse."
    assert page.locator("button:has-text('Confirm apse')").count() == 0
    assert Upload.objects.get(pk=upload.pk).verified_label == "vault"
