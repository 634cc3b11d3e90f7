"""Fixtures of the training-jobs tests: a tiny generated dataset, job rows in each state, personas."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from training_jobs import services
from training_jobs.models import Dataset, TrainingJob

TINY_CLASSES = ["altar", "apse", "vault"]


def make_dataset_folder(root: Path, classes=TINY_CLASSES, per_class: int = 3, size: int = 32) -> Path:
    from ml.testing import make_image_folder

    return make_image_folder(root, classes=list(classes), per_class=per_class, size=size)


@pytest.fixture(autouse=True)
def jobs_root(settings, tmp_path) -> Path:
    """Keep every job's model folder inside the test's temporary folder."""
    root = tmp_path / "training_jobs"
    settings.TRAINING_JOBS_ROOT = root
    return root


@pytest.fixture
def dataset_folder(tmp_path) -> Path:
    return make_dataset_folder(tmp_path / "tiny")


@pytest.fixture
def dataset(db, dataset_folder) -> Dataset:
    return services.dataset_register(path=dataset_folder, name="tiny")


@pytest.fixture
def ahe_test_counts(dataset) -> Dataset:
    """Give the tiny dataset the per-class test counts of AHE's official test split.

    Only scores on that split are set beside the published ones, and the
    counts are what identifies it.
    """
    from ml.reference import AHE_TEST_COUNTS

    dataset.counts = {**dataset.counts, "test": dict(AHE_TEST_COUNTS)}
    dataset.save(update_fields=["counts"])
    return dataset


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user("staff", password="staff-password", is_staff=True, is_superuser=True)


@pytest.fixture
def registered_user(db):
    return get_user_model().objects.create_user("visitor", password="visitor-password")


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def user_client(registered_user) -> Client:
    client = Client()
    client.force_login(registered_user)
    return client


@pytest.fixture
def anonymous_client() -> Client:
    return Client()


@pytest.fixture
def make_job(dataset, monkeypatch):
    """Create a queued job without sending a broker message. Pass status= to move it on."""
    monkeypatch.setattr(services, "training_job_enqueue", lambda job_id: None)

    def make(status: str = TrainingJob.Status.QUEUED, **settings) -> TrainingJob:
        settings.setdefault("backbone", "efficientnet_lite0")
        settings.setdefault("epochs", 1)
        settings.setdefault("batch_size", 4)
        settings.setdefault("image_size", 32)
        job = services.training_job_create(dataset=dataset, **settings)
        if status == TrainingJob.Status.QUEUED:
            return job
        claim = services.training_job_claim(job_id=job.pk, worker="test-worker")
        if status == TrainingJob.Status.SUCCEEDED:
            _finish_with_metrics(job, claim)
        elif status == TrainingJob.Status.FAILED:
            services.training_job_fail(job_id=job.pk, claim=claim, reason="Dataset folder not found.", log_tail="tail")
        elif status == TrainingJob.Status.CANCELLED:
            services.training_job_mark_cancelled(claim=claim, model_dir=None, best_epoch=None)
        job.refresh_from_db()
        job.claim = claim
        return job

    return make


def fake_test_report(class_names=TINY_CLASSES) -> dict:
    """An evaluate()-shaped result: each class has 3 images, one altar is taken for an apse."""
    per_class = {
        "altar": {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3},
        "apse": {"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3},
        "vault": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3},
    }
    samples = [
        {"path": f"test/{name}/{name}_{index}.jpg", "true": name, "pred": name}
        for name in class_names
        for index in range(3)
    ]
    samples[2]["pred"] = "apse"
    return {
        "accuracy": 8 / 9,
        "macro_f1": (0.8 + 6 / 7 + 1.0) / 3,
        "per_class": per_class,
        "confusion_matrix": [[2, 1, 0], [0, 3, 0], [0, 0, 3]],
        "class_names": list(class_names),
        "n": 9,
        "samples": samples,
    }


def _finish_with_metrics(job: TrainingJob, claim: services.Claim) -> None:
    from ml.testing import make_tiny_checkpoint

    model_dir = make_tiny_checkpoint(Path(services.conf.jobs_root()) / f"job-{job.pk}", class_names=TINY_CLASSES)
    epoch = {"epoch": 1, "train_loss": 1.2, "val_accuracy": 0.5, "val_macro_f1": 0.45, "lr": 0.001, "seconds": 3.0}
    val = {**fake_test_report(), "accuracy": 0.5, "macro_f1": 0.45}
    fit = {"model_dir": model_dir, "best_epoch": 1, "history": [epoch], "val_metrics": val}
    assert services.training_job_succeed(claim=claim, fit=fit, test=fake_test_report(), log_tail="done")


@pytest.fixture
def succeeded_job(make_job) -> TrainingJob:
    return make_job(TrainingJob.Status.SUCCEEDED)
