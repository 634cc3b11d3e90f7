"""The worker side: run_job trains for real on a tiny generated dataset, in this process."""

import shutil
import threading
from pathlib import Path

import pytest

from training_jobs import runner, services
from training_jobs.models import ClassMetric, EpochMetric, SamplePrediction, TrainingJob

Status = TrainingJob.Status


@pytest.fixture(autouse=True)
def quick_worker(settings):
    settings.TRAINING_JOB_LOADER_WORKERS = 0
    settings.TRAINING_JOB_DEVICE = "cpu"
    settings.TRAINING_JOB_PROGRESS_INTERVAL = 0


def test_run_job_trains_and_stores_results(make_job):
    job = make_job(epochs=1, batch_size=4, image_size=32)

    status = runner.run_job(job.pk, worker="worker-a")

    job.refresh_from_db()
    assert status == Status.SUCCEEDED, job.failure_reason
    assert job.status == Status.SUCCEEDED
    assert (Path(job.model_dir) / "model.safetensors").is_file()
    assert (Path(job.model_dir) / "model.json").is_file()
    assert job.class_names == ["altar", "apse", "vault"]
    assert 0 <= job.test_accuracy <= 1
    assert sum(map(sum, job.test_confusion_matrix)) == 9
    assert ClassMetric.objects.filter(job=job, split="test").count() == 3
    assert sum(row.support for row in ClassMetric.objects.filter(job=job, split="test")) == 9
    assert EpochMetric.objects.filter(job=job, epoch=1).exists()
    assert SamplePrediction.objects.filter(job=job).count() == 9
    assert "epoch 1/1" in job.log_tail


def test_build_config_passes_optional_settings(make_job):
    config = runner.build_config(make_job(seed=5, split_seed=1, ema_decay=0.99, patience=2))

    assert config.seed == 5
    assert config.split_seed == 1
    assert config.effective_split_seed == 1
    assert config.ema_decay == 0.99
    assert config.patience == 2


def test_build_config_leaves_optional_settings_off(make_job):
    config = runner.build_config(make_job(seed=5))

    assert config.effective_split_seed == 5
    assert config.ema_decay is None
    assert config.patience is None


def test_run_job_skips_job_claimed_elsewhere(make_job, monkeypatch):
    job = make_job()
    services.training_job_claim(job_id=job.pk, worker="worker-a")
    monkeypatch.setattr("ml.training.fit", lambda *args, **kwargs: pytest.fail("fit must not run"))

    assert runner.run_job(job.pk, worker="worker-b") == "skipped"


def test_run_job_records_dataset_error(make_job):
    job = make_job()
    shutil.rmtree(job.dataset.path)

    assert runner.run_job(job.pk, worker="worker-a") == Status.FAILED

    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert "not found" in job.failure_reason
    assert job.dataset.path in job.failure_reason
    assert job.log_tail


def test_run_job_records_unexpected_error(make_job, monkeypatch):
    job = make_job()

    def explode(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr("ml.training.fit", explode)

    assert runner.run_job(job.pk, worker="worker-a") == Status.FAILED

    job.refresh_from_db()
    assert job.failure_reason.startswith("Out of memory")
    assert "Lower the batch size" in job.failure_reason
    assert "RuntimeError" in job.log_tail


def test_run_job_cancel_before_first_epoch(make_job, monkeypatch):
    job = make_job()
    original_claim = services.training_job_claim

    def claim_then_cancel(**kwargs):
        claim = original_claim(**kwargs)
        services.training_job_cancel(job=TrainingJob.objects.get(pk=kwargs["job_id"]))
        return claim

    monkeypatch.setattr(services, "training_job_claim", claim_then_cancel)

    assert runner.run_job(job.pk, worker="worker-a") == Status.CANCELLED

    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert job.model_dir == ""
    assert not EpochMetric.objects.filter(job=job).exists()


def test_run_job_stops_at_time_limit(make_job, settings):
    settings.TRAINING_JOB_TIME_LIMIT = 0
    job = make_job()

    assert runner.run_job(job.pk, worker="worker-a") == Status.FAILED

    job.refresh_from_db()
    assert job.failure_reason.startswith("Timed out")


def test_progress_reporter_throttles_writes(make_job, settings, monkeypatch):
    settings.TRAINING_JOB_PROGRESS_INTERVAL = 5
    job = make_job(Status.RUNNING)
    clock = [1000.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    writes = []
    monkeypatch.setattr(services, "training_job_record_progress", lambda **kwargs: writes.append(kwargs["batch"]))
    reporter = runner.ProgressReporter(job.claim)

    for batch in range(1, 11):
        reporter.on_progress({"phase": "train", "epoch": 1, "epochs": 1, "batch": batch, "batches": 10, "loss": 1.0})
        clock[0] += 1.0

    assert writes == [1, 6]


def test_progress_reporter_reads_cancel_flag(make_job, settings):
    settings.TRAINING_JOB_PROGRESS_INTERVAL = 0
    job = make_job(Status.RUNNING)
    reporter = runner.ProgressReporter(job.claim)

    assert reporter.should_stop() is False
    services.training_job_cancel(job=job)
    assert reporter.should_stop() is True
    assert reporter.stop_reason == "cancel"


@pytest.mark.django_db(transaction=True)
def test_claim_race_trains_once(make_job, monkeypatch):
    """Two workers get the same job id at once: exactly one trains it."""
    job = make_job()
    trained = []
    barrier = threading.Barrier(2)

    def fake_fit(config, on_progress=None, should_stop=None):
        from ml.training import FitResult

        trained.append(config.out_dir)
        return FitResult(model_dir=None)

    monkeypatch.setattr("ml.training.fit", fake_fit)
    monkeypatch.setattr(services, "training_job_succeed", lambda **kwargs: True)
    monkeypatch.setattr("ml.evaluation.evaluate", lambda *args, **kwargs: {})
    outcomes = []

    def worker(name):
        from django.db import connection

        barrier.wait()
        try:
            outcomes.append(runner.run_job(job.pk, worker=name))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(f"worker-{index}",)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == ["skipped", Status.SUCCEEDED]
    assert len(trained) == 1


def test_training_task_routes_to_training_queue():
    from heritage_site.celery import app
    from training_jobs.tasks import run_training_job

    route = app.amqp.router.route({}, run_training_job.name, args=(1,), kwargs={})

    assert route["queue"].name == "training"
    assert run_training_job.acks_late is False
