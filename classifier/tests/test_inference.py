"""Worker-side batches with a real (tiny) model: results, model switching, failures."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from classifier import inference, services
from classifier.models import Prediction
from conftest import REPO_ROOT, make_image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_predictor(monkeypatch):
    monkeypatch.setattr(inference, "_loaded", None)


def _uploads(count: int):
    return [services.upload_create(name=f"{i}.jpg", data=make_image_bytes("JPEG", (50 + i, 40))) for i in range(count)]


def test_run_batch_predicts_all_waiting(active_model):
    uploads = _uploads(3)

    completed = inference.run_batch(uploads[0].latest_prediction_id, worker="test")

    assert completed == 3
    for upload in uploads:
        prediction = Prediction.objects.get(pk=upload.latest_prediction_id)
        assert prediction.status == Prediction.Status.DONE
        assert prediction.model_version == active_model
        assert set(prediction.probabilities) == set(active_model.class_names)
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.get)
        assert prediction.inference_ms > 0


def test_run_batch_matches_predictor_on_original(active_model):
    from ml.inference import Predictor

    # A small noisy PNG: the display copy re-encodes it as JPEG, which
    # changes its pixels, so only the original gives the CLI's result.
    noisy = Image.merge("RGB", [Image.effect_noise((64, 64), sigma) for sigma in (40, 60, 80)])
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    data = buffer.getvalue()
    upload = services.upload_create(name="noisy.png", data=data)

    inference.run_batch(upload.latest_prediction_id, worker="test")

    prediction = Prediction.objects.get(pk=upload.latest_prediction_id)
    (expected,) = Predictor(active_model.model_dir).predict([data])
    for name, probability in expected.items():
        assert prediction.probabilities[name] == pytest.approx(probability, abs=1e-5)


def test_run_batch_redelivered_message_is_noop(active_model):
    (upload,) = _uploads(1)
    inference.run_batch(upload.latest_prediction_id, worker="first")
    finished = Prediction.objects.get(pk=upload.latest_prediction_id)

    assert inference.run_batch(upload.latest_prediction_id, worker="second") == 0
    assert Prediction.objects.get(pk=upload.latest_prediction_id).finished_at == finished.finished_at


def test_run_batch_switches_to_newly_active_model(active_model, tmp_path):
    from ml.testing import make_tiny_checkpoint

    (first,) = _uploads(1)
    inference.run_batch(first.latest_prediction_id, worker="test")
    classes = ["altar", "apse", "vault"]
    other = services.model_version_register(
        model_dir=make_tiny_checkpoint(tmp_path / "other", class_names=classes), version="other-v2"
    )

    services.model_version_activate(other)
    second = services.upload_create(name="later.jpg", data=make_image_bytes("JPEG", (90, 40)))
    inference.run_batch(second.latest_prediction_id, worker="test")

    assert Prediction.objects.get(pk=first.latest_prediction_id).model_version == active_model
    switched = Prediction.objects.get(pk=second.latest_prediction_id)
    assert switched.model_version == other
    assert set(switched.probabilities) == set(classes)


def test_run_batch_uses_default_model_when_none_active(db):
    (upload,) = _uploads(1)

    inference.run_batch(upload.latest_prediction_id, worker="test")

    prediction = Prediction.objects.get(pk=upload.latest_prediction_id)
    assert prediction.status == Prediction.Status.DONE
    assert prediction.model_version.is_default


def test_run_batch_marks_unreadable_file_failed(active_model):
    broken, fine = _uploads(2)
    default_storage.delete(broken.stored_image.original.name)

    inference.run_batch(broken.latest_prediction_id, worker="test")

    failed = Prediction.objects.get(pk=broken.latest_prediction_id)
    assert failed.status == Prediction.Status.FAILED
    assert "stored image could not be read" in failed.error
    assert Prediction.objects.get(pk=fine.latest_prediction_id).status == Prediction.Status.DONE


def test_run_batch_leaves_pending_without_model(settings, tmp_path):
    settings.DEFAULT_MODEL_DIR = str(tmp_path / "nowhere")
    (upload,) = _uploads(1)

    assert inference.run_batch(upload.latest_prediction_id, worker="test") == 0

    waiting = Prediction.objects.get(pk=upload.latest_prediction_id)
    assert waiting.status == Prediction.Status.PENDING
    assert waiting.claim_token == ""


def test_run_batch_fails_when_model_files_broken(db, tmp_path):
    from ml.testing import make_tiny_checkpoint

    model_dir = make_tiny_checkpoint(tmp_path / "broken")
    (model_dir / "model.safetensors").write_bytes(b"not weights")
    services.model_version_activate(services.model_version_register(model_dir=model_dir, version="broken"))
    (upload,) = _uploads(1)

    inference.run_batch(upload.latest_prediction_id, worker="test")

    failed = Prediction.objects.get(pk=upload.latest_prediction_id)
    assert failed.status == Prediction.Status.FAILED
    assert "model could not be loaded" in failed.error


def test_failed_prediction_retried_succeeds(active_model):
    (upload,) = _uploads(1)
    token, claimed = services.predictions_claim(upload.latest_prediction_id, limit=1, worker="test")
    services.prediction_fail(claimed[0], token=token, error="worker ran out of memory")

    retry = services.prediction_request(upload)
    inference.run_batch(retry.pk, worker="test")

    assert Prediction.objects.get(pk=retry.pk).status == Prediction.Status.DONE
    assert upload.predictions.filter(status=Prediction.Status.FAILED).count() == 1


def test_web_process_never_imports_torch(tmp_path):
    script = (
        "import sys, django\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "from django.urls import get_resolver\n"
        "import classifier.views, classifier.api, classifier.tasks, classifier.admin, heritage_site.urls\n"
        "get_resolver().url_patterns\n"
        "assert Client().get('/healthz').status_code == 200\n"
        "loaded = sorted(name for name in sys.modules if name == 'torch' or name.startswith('torch.'))\n"
        "print('TORCH' if loaded else 'CLEAN')\n"
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "heritage_site.settings_test",
        "HERITAGE_TEST_ROOT": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("CLEAN")
