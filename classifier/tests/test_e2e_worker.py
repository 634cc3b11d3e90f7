"""End to end: uploads through the API, a real Celery worker process on Redis stores the predictions."""

from __future__ import annotations

import signal
import socket
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from classifier import services
from classifier.models import Prediction
from conftest import make_image_bytes, use_broker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def clear_throttle_counters():
    cache.clear()


def _upload(client: APIClient, name: str, size=(64, 48)) -> dict:
    response = client.post(
        "/api/v1/images/", {"file": [SimpleUploadedFile(name, make_image_bytes("JPEG", size))]}, format="multipart"
    )
    assert response.status_code == 201, response.content
    return response.json()["results"][0]


def _status(image_id: int) -> str:
    return Prediction.objects.filter(upload_id=image_id).latest("id").status


def test_worker_predicts_uploaded_image(start_worker, active_model):
    worker = start_worker()
    client = APIClient()

    image = _upload(client, "nave.jpg")
    wait_for(lambda: _status(image["id"]) != "pending", 60, f"prediction of image {image['id']}\n{worker.log()}")

    prediction = Prediction.objects.get(upload_id=image["id"])
    assert prediction.status == Prediction.Status.DONE
    assert prediction.model_version == active_model
    assert prediction.claimed_by.startswith("test-inference@")
    body = client.get(f"/api/v1/images/{image['id']}/").json()
    assert body["prediction"]["label"] == prediction.label
    assert body["prediction"]["model_version"] == active_model.version


def test_upload_predicted_after_worker_restart(start_worker, active_model):
    worker = start_worker()
    client = APIClient()
    first = _upload(client, "first.jpg", (64, 48))
    wait_for(lambda: _status(first["id"]) == "done", 60, f"first prediction\n{worker.log()}")

    worker.stop()
    second = _upload(client, "second.jpg", (65, 48))
    time.sleep(2)
    assert _status(second["id"]) == "pending"

    worker.start()
    wait_for(lambda: _status(second["id"]) == "done", 60, f"prediction after restart\n{worker.log()}")


def test_claim_of_killed_worker_recovered_on_restart(start_worker, active_model):
    worker = start_worker()
    worker.stop()
    upload = services.upload_create(name="orphan.jpg", data=make_image_bytes("JPEG", (70, 48)))
    # What a worker process killed in the middle of a batch leaves behind:
    # a claim under its node name, long before the next start.
    services.predictions_claim(
        upload.latest_prediction_id, limit=1, worker=f"test-inference@{socket.gethostname()} pid 4242"
    )
    Prediction.objects.filter(pk=upload.latest_prediction_id).update(claimed_at=timezone.now() - timedelta(seconds=5))

    worker.start()

    wait_for(lambda: _status(upload.pk) == "done", 60, f"orphaned prediction\n{worker.log()}")
    assert Prediction.objects.get(pk=upload.latest_prediction_id).attempts == 2


def test_upload_while_broker_down_predicted_later(start_worker, active_model, redis_url):
    worker = start_worker()
    worker.stop()
    use_broker("redis://127.0.0.1:1/0")
    try:
        upload = services.upload_create(name="offline.jpg", data=make_image_bytes("JPEG", (71, 48)))
    finally:
        use_broker(redis_url)
    assert Prediction.objects.get(pk=upload.latest_prediction_id).queued_at is None

    worker.start()

    wait_for(lambda: _status(upload.pk) == "done", 60, f"prediction queued by the sweep\n{worker.log()}")


def test_worker_killed_mid_batch_recovered_after_restart(start_worker, tmp_path):
    from ml.testing import make_tiny_checkpoint

    # A full-size backbone makes one batch of 16 take over a second on a CPU,
    # long enough to kill the worker while it holds the claims.
    slow_model = make_tiny_checkpoint(tmp_path / "slow", backbone="efficientnet_lite2", image_size=260)
    services.model_version_activate(services.model_version_register(model_dir=slow_model, version="slow"))
    worker = start_worker()
    worker.stop()
    uploads = [
        services.upload_create(name=f"{i}.jpg", data=make_image_bytes("JPEG", (300 + i, 200))) for i in range(16)
    ]
    prediction_ids = [upload.latest_prediction_id for upload in uploads]

    worker.start()
    wait_for(
        lambda: Prediction.objects.filter(pk__in=prediction_ids).exclude(claim_token="").exists(),
        60,
        f"claim of the batch\n{worker.log()}",
    )
    worker.stop(signal.SIGKILL)

    stranded = Prediction.objects.filter(pk__in=prediction_ids, status=Prediction.Status.PENDING)
    assert stranded.exclude(claim_token="").exists()

    worker.start()
    wait_for(
        lambda: not Prediction.objects.filter(pk__in=prediction_ids, status=Prediction.Status.PENDING).exists(),
        120,
        f"predictions after the restart\n{worker.log()}",
    )
    done = Prediction.objects.filter(pk__in=prediction_ids, status=Prediction.Status.DONE)
    assert done.count() == 16
    assert done.filter(attempts__gte=2).exists()
