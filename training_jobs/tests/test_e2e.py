"""End to end: a real Celery training worker on Redis and PostgreSQL trains a tiny job launched through the API.

Skipped here when Redis or PostgreSQL is missing, and a failure in CI (CI=true).
"""

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from conftest import make_image_bytes, require_service, wait_for
from training_jobs.models import ClassMetric, SamplePrediction, TrainingJob
from training_jobs.tasks import run_training_job
from training_jobs.tests.conftest import TINY_CLASSES

pytestmark = [pytest.mark.e2e]

JOB_TIMEOUT_SECONDS = 240


@pytest.fixture
def training_env(monkeypatch, jobs_root):
    """Set worker settings for a quick job before start_worker copies the environment."""
    monkeypatch.setenv("TRAINING_JOBS_ROOT", str(jobs_root))
    monkeypatch.setenv("TRAINING_JOB_LOADER_WORKERS", "0")
    monkeypatch.setenv("TRAINING_JOB_DEVICE", "cpu")
    monkeypatch.setenv("TRAINING_JOB_PROGRESS_INTERVAL", "0.5")
    monkeypatch.setenv("TRAINING_JOB_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("TRAINING_JOB_STALE_AFTER", "30")


@pytest.fixture
def training_worker(training_env, start_worker):
    """Return start_worker, after training_env has set the workers' environment."""
    return start_worker


@pytest.fixture
def postgres():
    require_service(
        connection.vendor == "postgresql",
        f"the end-to-end training test needs PostgreSQL (DATABASE_URL), not {connection.vendor}",
    )


def api_get(client, url, token):
    return client.get(url, HTTP_AUTHORIZATION=f"Token {token}")


def api_post(client, url, token, body=None):
    return client.post(url, body or {}, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")


def upload_and_wait(client, image: bytes, name: str) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post("/api/v1/images/?wait=20", {"file": SimpleUploadedFile(name, image, "image/jpeg")})
    assert response.status_code == 201, response.content
    result = response.json()["results"][0]
    assert result["status"] == "done", result
    return result["prediction"]


def test_training_job_end_to_end(postgres, training_worker, active_model, dataset, staff_user, anonymous_client):
    training_worker(queues="training", name="test-training")
    training_worker(queues="inference", name="test-inference")
    token = Token.objects.create(user=staff_user).key

    before = upload_and_wait(anonymous_client, make_image_bytes("JPEG", (70, 50)), "before.jpg")
    assert before["model_version"] == active_model.version
    assert len(before["probabilities"]) == 10

    created = api_post(
        anonymous_client,
        "/api/v1/training-jobs/",
        token,
        {"dataset": dataset.pk, "backbone": "efficientnet_lite0", "epochs": 1, "batch_size": 4, "image_size": 32},
    )
    assert created.status_code == 201, created.content
    job_id = created.json()["id"]
    url = f"/api/v1/training-jobs/{job_id}/"

    seen = set()

    def finished() -> bool:
        status = api_get(anonymous_client, url, token).json()["status"]
        seen.add(status)
        return status in ("succeeded", "failed", "cancelled")

    wait_for(finished, JOB_TIMEOUT_SECONDS, f"training job {job_id} to finish")
    body = api_get(anonymous_client, url, token).json()
    assert body["status"] == "succeeded", (body["failure_reason"], body.get("log_tail"))
    assert body["progress"] == 1
    assert [epoch["epoch"] for epoch in body["epochs"]] == [1]
    assert sorted(body["test_metrics"]["per_class"]) == TINY_CLASSES
    assert sum(map(sum, body["test_metrics"]["confusion_matrix"])) == 9
    assert ClassMetric.objects.filter(job_id=job_id, split="test").count() == 3
    assert SamplePrediction.objects.filter(job_id=job_id).count() == 9
    assert TrainingJob.objects.get(pk=job_id).worker.startswith("test-training@")

    promoted = api_post(anonymous_client, f"{url}promote/", token)
    assert promoted.status_code == 200, promoted.content

    job = TrainingJob.objects.get(pk=job_id)
    after = upload_and_wait(anonymous_client, make_image_bytes("JPEG", (90, 40)), "after.jpg")
    assert after["model_version"] == job.model_version.version
    assert after["model_version"] != before["model_version"]
    assert sorted(after["probabilities"]) == TINY_CLASSES


def test_redelivered_message_trains_once(postgres, training_worker, make_job):
    """The same job id sent three times, on a worker busy with it: one training, two skips."""
    worker = training_worker(queues="training", name="test-training")
    job = make_job(epochs=1, batch_size=4, image_size=32, backbone="efficientnet_lite0")

    for _ in range(3):
        run_training_job.apply_async(args=[job.pk])

    wait_for(
        lambda: TrainingJob.objects.get(pk=job.pk).is_finished, JOB_TIMEOUT_SECONDS, f"training job {job.pk} to finish"
    )
    skipped = f"training job {job.pk} not claimed by"
    wait_for(lambda: worker.log_path.read_text().count(skipped) == 2, 30, "the two extra messages to be skipped")

    log = worker.log_path.read_text()
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.failure_reason
    assert log.count(f"training job {job.pk} claimed by") == 1
    assert log.count(f"training job {job.pk} starts") == 1


def test_killed_worker_job_marked_failed(postgres, training_worker, make_job, tmp_path):
    """A worker killed mid-job leaves it running, and the restarted worker marks it failed."""
    import signal

    from training_jobs import services
    from training_jobs.tests.conftest import make_dataset_folder

    worker = training_worker(queues="training", name="test-training")
    # Enough images that training lasts several seconds after the claim.
    folder = make_dataset_folder(tmp_path / "larger", per_class=30, size=64)
    dataset = services.dataset_register(path=folder, name="larger")
    job = make_job(epochs=3, batch_size=4, image_size=64, backbone="efficientnet_lite0")
    TrainingJob.objects.filter(pk=job.pk).update(dataset=dataset)

    run_training_job.apply_async(args=[job.pk])
    wait_for(lambda: TrainingJob.objects.get(pk=job.pk).status == "running", 60, f"training job {job.pk} to start")
    worker.stop(signal.SIGKILL)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.RUNNING

    # The same node name lets the new process find its predecessor's job.
    # Its log file is shared with the killed one, whose "ready" line makes
    # start() return early, so the test waits for the outcome instead.
    training_worker(queues="training", name="test-training")
    wait_for(lambda: TrainingJob.objects.get(pk=job.pk).is_finished, 60, f"training job {job.pk} to be marked failed")

    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED
    assert "restarted while the job was running" in job.failure_reason
