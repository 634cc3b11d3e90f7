"""A staff user launches a job from the admin, watches its page update, and reads the dashboard.

Drives Debian's /usr/bin/chromium through Playwright. The test plays the
training worker itself through the services, so that it decides when each
progress step reaches the database and can check that the open page follows.
"""

import os
from pathlib import Path

import pytest
from django.db import connections

from conftest import require_service
from training_jobs import services
from training_jobs.models import TrainingJob
from training_jobs.tests.conftest import fake_test_report

pytestmark = [pytest.mark.browser]

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_TIMEOUT_MS = 15_000


@pytest.fixture
def page(monkeypatch):
    # Playwright's sync API keeps an asyncio loop in this thread, so Django
    # rejects database calls from the test body, which is plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require_service(sync_playwright is not None, "the Python package playwright is not installed")
    require_service(CHROMIUM.exists(), f"Chromium is not installed at {CHROMIUM}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(STEP_TIMEOUT_MS)
        page = context.new_page()
        # Browser console errors end up in the test's output when it fails.
        page.on("console", lambda message: print(f"browser console {message.type}: {message.text}"))
        page.on("pageerror", lambda error: print(f"browser page error: {error}"))
        yield page
        context.close()
        browser.close()
        # ORM calls in the test body ran in Playwright's greenlet, where Django
        # keeps separate connections; an open one blocks dropping the test database.
        connections.close_all()


def chart_points(page, canvas_id: str) -> int:
    return page.evaluate(f"() => (Chart.getChart('{canvas_id}')?.data.labels.length) ?? -1")


def test_staff_launches_and_watches_job(
    page, live_server, transactional_db, dataset, staff_user, monkeypatch, tmp_path
):
    sent = []
    monkeypatch.setattr(services, "training_job_enqueue", sent.append)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/training_jobs/trainingjob/add/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-password")
    page.click("input[type=submit]")

    page.select_option("#id_dataset", str(dataset.pk))
    page.select_option("#id_backbone", "efficientnet_lite0")
    page.select_option("#id_mode", "linear-probe")
    page.fill("#id_epochs", "2")
    page.fill("#id_batch_size", "4")
    page.fill("#id_image_size", "32")
    page.click("input[name=_save]")

    page.wait_for_url("**/training/jobs/*/")
    job = TrainingJob.objects.get()
    assert sent == [job.pk]
    assert "Waiting for a training worker; 0 jobs ahead of it." in page.inner_text("#job-message")

    # The worker claims the job and reports half of the first epoch.
    claim = services.training_job_claim(job_id=job.pk, worker="browser-test")
    services.training_job_record_progress(claim=claim, epoch=1, batch=3, batches=6, loss=1.75)
    page.wait_for_function("document.getElementById('job-progress').value === 0.25")
    assert page.inner_text("#job-status") == "Running"
    assert page.inner_text("#epoch-label") == "1 of 2"
    assert page.inner_text("#last-loss") == "1.7500"
    assert page.inner_text("#remaining") != "–"

    # The first epoch ends: the curves get their first point.
    metrics = {"train_loss": 1.1, "val_accuracy": 0.6, "val_macro_f1": 0.5, "lr": 0.001, "seconds": 2.0}
    services.training_job_record_epoch(claim=claim, epoch=1, metrics=metrics)
    page.wait_for_function("Chart.getChart('val-chart').data.labels.length === 1")
    assert chart_points(page, "loss-chart") == 1

    # The job succeeds: the page reloads itself and shows the results.
    from ml.testing import make_tiny_checkpoint

    model_dir = make_tiny_checkpoint(tmp_path / "model", class_names=["altar", "apse", "vault"])
    fit = {"model_dir": model_dir, "best_epoch": 1, "history": [{"epoch": 1, **metrics}], "val_metrics": None}
    services.training_job_succeed(claim=claim, fit=fit, test=fake_test_report())
    page.wait_for_selector("#test-class-table")
    assert page.inner_text("#job-status") == "Succeeded"
    assert page.locator("#test-class-table tbody tr").count() == 3
    assert page.locator(".heatmap a").count() == 4
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)

    # A confusion-matrix cell lists its images.
    page.click(".heatmap a[title^='1 altar images predicted as apse']")
    page.wait_for_selector("#sample-grid img")
    assert "altar predicted as apse" in page.inner_text("h1")

    # The dashboard lists the job, and the comparison page draws its chart.
    page.goto(f"{live_server.url}/training/")
    assert page.locator(f"#jobs-table tr[data-job='{job.pk}']").count() == 1
    page.check(f"input[name=job][value='{job.pk}']")
    page.click("button:has-text('Compare')")
    page.wait_for_selector("#compare-chart[data-ready='1']")
    assert page.locator("#compare-table tbody tr").count() == 3
    # The tiny dataset's test split is not AHE's, so no cell beats the paper.
    assert page.locator("#compare-table tr.not-comparable").count() == 1
    assert page.locator("#compare-table td.beats-paper").count() == 0
    assert page.get_attribute("#compare-chart", "data-axis-min") == "0.5"
    # Every class column fits the default 1280 px wide window without scrolling.
    assert page.evaluate("(wrap => wrap.scrollWidth <= wrap.clientWidth)(document.querySelector('.table-wrap'))")
    assert page.evaluate("Chart.getChart('compare-chart').data.datasets.length") == 3
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

    # On a phone the bars run sideways, one class per row, with readable names.
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{live_server.url}/training/compare/?ids={job.pk}")
    page.wait_for_selector("#compare-chart[data-ready='1']")
    assert page.evaluate("Chart.getChart('compare-chart').options.indexAxis") == "y"
    assert "inner dome" in page.evaluate("Chart.getChart('compare-chart').data.labels")
    assert page.evaluate("Chart.getChart('compare-chart').data.datasets.map(d => d.label)")[-1] == f"Job {job.pk}"
    assert page.evaluate("document.getElementById('compare-chart').clientHeight") > 400
    page.screenshot(path=str(tmp_path / "compare-phone.png"), full_page=True)

    # On a phone only the tables scroll sideways, never the whole page.
    for path in ("/training/", f"/training/jobs/{job.pk}/", f"/training/compare/?ids={job.pk}"):
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
