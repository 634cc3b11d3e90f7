import importlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from classifier.models import ModelVersion
from training_jobs import selectors, services
from training_jobs.models import ClassMetric, EpochMetric, SamplePrediction, TrainingJob
from training_jobs.tests.conftest import fake_test_report, make_dataset_folder

Status = TrainingJob.Status


# Datasets


def test_dataset_register_counts_classes_and_splits(db, dataset_folder):
    dataset = services.dataset_register(path=dataset_folder)

    assert dataset.name == "tiny"
    assert dataset.class_names == ["altar", "apse", "vault"]
    assert dataset.counts["train"] == {"altar": 3, "apse": 3, "vault": 3}
    assert dataset.counts["test"] == {"altar": 3, "apse": 3, "vault": 3}
    assert dataset.unreadable == []
    assert dataset.is_complete


def test_dataset_register_reports_unreadable_and_missing(db, dataset_folder):
    (dataset_folder / "train" / "altar" / "broken.jpg").write_bytes(b"not an image")
    (dataset_folder / "train" / "gargoyle").mkdir()
    (dataset_folder / "test" / "gargoyle").mkdir()
    make_dataset_folder(dataset_folder, classes=["gargoyle"], per_class=2)
    for image in (dataset_folder / "test" / "gargoyle").iterdir():
        image.unlink()

    dataset = services.dataset_register(path=dataset_folder)

    assert dataset.unreadable == ["train/altar/broken.jpg"]
    assert dataset.missing == {"train": [], "test": ["gargoyle"]}
    assert not dataset.is_complete


def test_dataset_register_rejects_folder_without_test_split(db, tmp_path):
    folder = make_dataset_folder(tmp_path / "half")
    for image in (folder / "test").rglob("*.jpg"):
        image.unlink()
    for class_dir in (folder / "test").iterdir():
        class_dir.rmdir()
    (folder / "test").rmdir()

    with pytest.raises(services.InvalidDataset, match="test"):
        services.dataset_register(path=folder)


def test_dataset_register_rescans_known_path(db, dataset_folder):
    first = services.dataset_register(path=dataset_folder)
    (dataset_folder / "train" / "vault" / "vault_0.jpg").unlink()

    second = services.dataset_register(path=dataset_folder)

    assert second.pk == first.pk
    assert second.counts["train"]["vault"] == 2


def test_dataset_register_rejects_name_of_other_folder(db, dataset_folder, tmp_path):
    services.dataset_register(path=dataset_folder, name="shared-name")
    other = make_dataset_folder(tmp_path / "other")

    with pytest.raises(services.InvalidDataset, match="already exists"):
        services.dataset_register(path=other, name="shared-name")


# Launch


def test_create_takes_default_model_settings(dataset, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "training_job_enqueue", sent.append)

    with django_capture_on_commit_callbacks(execute=True):
        job = services.training_job_create(dataset=dataset)

    defaults = selectors.job_defaults()
    assert job.status == Status.QUEUED
    assert job.backbone == defaults["backbone"] == "efficientnet_lite2"
    assert job.epochs == defaults["epochs"]
    assert job.mode == "finetune"
    assert job.split_seed is None
    assert job.ema_decay is None
    assert job.patience is None
    assert sent == [job.pk]


def test_create_stores_optional_settings(dataset, monkeypatch):
    monkeypatch.setattr(services, "training_job_enqueue", lambda job_id: None)

    job = services.training_job_create(dataset=dataset, split_seed=1, ema_decay=0.998, patience=3)

    job.refresh_from_db()
    assert job.split_seed == 1
    assert job.ema_decay == 0.998
    assert job.patience == 3


def test_create_sends_message_only_after_commit(dataset, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "training_job_enqueue", sent.append)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.training_job_create(dataset=dataset)

    assert sent == []
    assert len(callbacks) == 1


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1}, "batch_size"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": 3.0}, "learning_rate"),
        ({"image_size": 8}, "image_size"),
        ({"mode": "distill"}, "mode"),
        ({"backbone": "resnet50"}, "backbone"),
        ({"backbone": "resnet50", "weights_file": "/nonexistent/weights.safetensors"}, "weights_file"),
        ({"seed": -1}, "seed"),
        ({"split_seed": -1}, "split_seed"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": 0.0}, "ema_decay"),
        ({"ema_decay": float("nan")}, "ema_decay"),
        ({"patience": 0}, "patience"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_create_rejects_invalid_settings(dataset, values, field):
    with pytest.raises(services.InvalidJobSettings) as error:
        services.training_job_create(dataset=dataset, **values)

    assert error.value.field == field
    assert field in str(error.value)
    assert not TrainingJob.objects.exists()


def test_create_reports_every_invalid_field(dataset):
    with pytest.raises(services.InvalidJobSettings) as error:
        services.training_job_create(dataset=dataset, epochs=0, learning_rate=-1.0, image_size=7)

    assert list(error.value.errors) == ["epochs", "image_size", "learning_rate"]
    assert error.value.field == "epochs"
    assert "epochs must be a whole number" in str(error.value)
    assert "learning_rate must be above 0" in str(error.value)


def test_create_states_each_range(dataset):
    with pytest.raises(services.InvalidJobSettings) as error:
        services.training_job_create(dataset=dataset, batch_size=1, image_size=100000)

    assert error.value.errors["batch_size"] == "batch_size must be a whole number from 2 to 4096, not 1."
    assert error.value.errors["image_size"] == "image_size must be a whole number from 32 to 1024, not 100000."


def test_settings_errors_skip_missing_values(dataset):
    errors = services.training_job_settings_errors(dataset=None, values={"epochs": 0, "mode": "finetune"})

    assert errors == {"epochs": "epochs must be a whole number from 1 to 1000, not 0."}


def test_create_rejects_dataset_with_missing_class(dataset):
    dataset.missing = {"train": [], "test": ["vault"]}
    dataset.save()

    with pytest.raises(services.InvalidJobSettings, match="vault") as error:
        services.training_job_create(dataset=dataset)

    assert error.value.field == "dataset"


# Cancel


def test_cancel_queued_job_finishes_it(make_job):
    job = make_job()

    job = services.training_job_cancel(job=job)

    assert job.status == Status.CANCELLED
    assert job.finished_at is not None


def test_cancel_running_job_requests_stop(make_job):
    job = make_job(Status.RUNNING)

    job = services.training_job_cancel(job=job)

    assert job.status == Status.RUNNING
    assert job.cancel_requested
    assert services.training_job_should_stop(claim=job.claim) == "cancel"


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
def test_cancel_rejects_finished_job(make_job, status):
    job = make_job(status)

    with pytest.raises(services.InvalidTransition, match=status):
        services.training_job_cancel(job=job)

    job.refresh_from_db()
    assert job.status == status


# Claim and progress


def test_claim_moves_queued_job_to_running(make_job):
    job = make_job()

    claim = services.training_job_claim(job_id=job.pk, worker="worker-a")

    job.refresh_from_db()
    assert claim is not None
    assert job.status == Status.RUNNING
    assert job.worker == "worker-a"
    assert job.claim_token == claim.token
    assert job.heartbeat_at is not None


def test_claim_twice_gives_one_claim(make_job):
    job = make_job()

    first = services.training_job_claim(job_id=job.pk, worker="worker-a")
    second = services.training_job_claim(job_id=job.pk, worker="worker-b")

    job.refresh_from_db()
    assert first is not None
    assert second is None
    assert job.worker == "worker-a"


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
def test_claim_rejects_finished_job(make_job, status):
    job = make_job(status)

    assert services.training_job_claim(job_id=job.pk, worker="worker-b") is None


def test_claim_rejects_unknown_job(db):
    assert services.training_job_claim(job_id=999_999, worker="worker-a") is None


def test_progress_and_epoch_are_stored(make_job):
    job = make_job(Status.RUNNING)
    metrics = {"train_loss": 0.9, "val_accuracy": 0.6, "val_macro_f1": 0.55, "lr": 0.001, "seconds": 4.2}

    assert services.training_job_record_progress(claim=job.claim, epoch=1, batch=3, batches=6, loss=1.5)
    job.refresh_from_db()
    assert job.progress == pytest.approx(0.5)
    assert job.epoch_progress == pytest.approx(0.5)

    assert services.training_job_record_epoch(claim=job.claim, epoch=1, metrics=metrics)
    job.refresh_from_db()
    assert job.progress == pytest.approx(1.0)
    row = EpochMetric.objects.get(job=job)
    assert row.val_macro_f1 == 0.55
    assert row.seconds == 4.2


def test_writes_from_lost_claim_are_ignored(make_job):
    job = make_job(Status.RUNNING)
    services.training_job_fail(job_id=job.pk, reason="lost")

    assert not services.training_job_record_progress(claim=job.claim, epoch=1, batch=1, batches=2, loss=1.0)
    assert not services.training_job_heartbeat(claim=job.claim)
    assert not services.training_job_succeed(
        claim=job.claim, fit={"model_dir": "/tmp/x", "history": []}, test=fake_test_report()
    )
    assert services.training_job_should_stop(claim=job.claim) == "lost"
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert not ClassMetric.objects.filter(job=job).exists()


def test_succeed_records_the_test_split_fingerprint(make_job):
    from ml.reference import AHE_TEST_FINGERPRINT

    job = make_job(Status.RUNNING)
    test = {**fake_test_report(), "split_fingerprint": AHE_TEST_FINGERPRINT}

    assert services.training_job_succeed(claim=job.claim, fit={"model_dir": "/tmp/x", "history": []}, test=test)
    job.refresh_from_db()
    assert job.test_split_fingerprint == AHE_TEST_FINGERPRINT
    assert job.scored_on_ahe_test_split


def test_should_stop_after_time_limit(make_job, settings):
    settings.TRAINING_JOB_TIME_LIMIT = 60
    job = make_job(Status.RUNNING)
    TrainingJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=61))

    assert services.training_job_should_stop(claim=job.claim) == "time_limit"


# Outcomes


def test_succeed_stores_all_metrics(succeeded_job):
    job = succeeded_job

    assert job.status == Status.SUCCEEDED
    assert job.phase == TrainingJob.Phase.DONE
    assert job.test_accuracy == pytest.approx(8 / 9)
    assert job.test_confusion_matrix == [[2, 1, 0], [0, 3, 0], [0, 0, 3]]
    assert job.val_macro_f1 == 0.45
    assert ClassMetric.objects.filter(job=job, split="test").count() == 3
    assert ClassMetric.objects.filter(job=job, split="val").count() == 3
    assert EpochMetric.objects.filter(job=job).count() == 1
    assert SamplePrediction.objects.filter(job=job).count() == 9
    confused = selectors.training_job_samples(job, true_class="altar", predicted_class="apse")
    assert [sample.path for sample in confused] == ["test/altar/altar_2.jpg"]
    assert job.progress == 1.0


def test_mark_cancelled_keeps_best_checkpoint(make_job, tmp_path):
    job = make_job(Status.RUNNING)

    assert services.training_job_mark_cancelled(claim=job.claim, model_dir=tmp_path / "best", best_epoch=2)

    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert job.model_dir == str(tmp_path / "best")
    assert job.best_epoch == 2


def test_fail_records_reason_and_log(make_job):
    job = make_job(Status.RUNNING)

    assert services.training_job_fail(job_id=job.pk, claim=job.claim, reason="Out of memory.", log_tail="line 1")

    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.failure_reason == "Out of memory."
    assert job.log_tail == "line 1"


def test_fail_rejects_finished_job(succeeded_job):
    assert not services.training_job_fail(job_id=succeeded_job.pk, reason="late")

    succeeded_job.refresh_from_db()
    assert succeeded_job.status == Status.SUCCEEDED


# Lost workers


def test_fail_lost_marks_stale_running_job(make_job, settings):
    settings.TRAINING_JOB_STALE_AFTER = 60
    stale = make_job(Status.RUNNING)
    fresh = make_job(Status.RUNNING)
    TrainingJob.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))

    failed = services.training_job_fail_lost()

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert failed == [stale.pk]
    assert stale.status == Status.FAILED
    assert "heartbeat" in stale.failure_reason
    assert fresh.status == Status.RUNNING


def test_fail_orphans_of_restarted_worker(make_job):
    job = make_job(Status.RUNNING)
    other = make_job(Status.RUNNING)
    TrainingJob.objects.filter(pk=other.pk).update(worker="other-worker")

    failed = services.training_job_fail_orphans(worker="test-worker")

    job.refresh_from_db()
    other.refresh_from_db()
    assert failed == [job.pk]
    assert "restarted" in job.failure_reason
    assert other.status == Status.RUNNING


def test_requeue_waiting_resends_queued_jobs(make_job, monkeypatch):
    queued = make_job()
    make_job(Status.RUNNING)
    sent = []
    monkeypatch.setattr(services, "training_job_enqueue", sent.append)

    assert services.training_job_requeue_waiting() == 1
    assert sent == [queued.pk]


# Promotion


def test_promote_activates_model_version(succeeded_job):
    job = services.training_job_promote(job=succeeded_job)

    active = ModelVersion.objects.get(is_active=True)
    assert job.model_version == active
    assert Path(active.model_dir) == Path(job.model_dir).resolve()
    assert active.class_names == ["altar", "apse", "vault"]
    assert job.promoted_at is not None
    assert active.metrics["val"] == {"accuracy": job.val_accuracy, "macro_f1": job.val_macro_f1}
    assert active.metrics["test"]["macro_f1"] == job.test_macro_f1
    assert active.metrics["test"]["split_fingerprint"] == job.test_split_fingerprint
    assert active.metrics["test"]["per_class"]["altar"]["f1"] == pytest.approx(0.8)
    assert active.metrics["test"]["confusion_matrix"] == job.test_confusion_matrix
    assert active.metrics["test"]["n"] == 9
    assert active.metrics["training_job"] == job.pk


def test_migration_nests_old_promoted_metrics(succeeded_job):
    from django.apps import apps

    migration = importlib.import_module("training_jobs.migrations.0004_promoted_metrics_shape")
    old = ModelVersion.objects.create(
        version="old-promoted",
        model_dir=succeeded_job.model_dir,
        class_names=["altar", "apse", "vault"],
        metrics={"accuracy": 0.9, "macro_f1": 0.8, "training_job": succeeded_job.pk},
    )
    committed = {"val": {"accuracy": 0.97, "macro_f1": 0.96}, "test": {"macro_f1": 0.95}}
    default = ModelVersion.objects.create(
        version="default", model_dir="ml/default_model", class_names=["altar"], metrics=committed
    )

    migration.nest_promoted_metrics(apps, None)

    old.refresh_from_db()
    default.refresh_from_db()
    assert old.metrics["test"]["accuracy"] == succeeded_job.test_accuracy
    assert old.metrics["test"]["split_fingerprint"] == succeeded_job.test_split_fingerprint
    assert old.metrics["test"]["per_class"]["apse"]["recall"] == 1.0
    assert old.metrics["val"]["macro_f1"] == succeeded_job.val_macro_f1
    assert old.metrics["training_job"] == succeeded_job.pk
    assert default.metrics == committed


def test_promote_again_keeps_one_version(succeeded_job):
    services.training_job_promote(job=succeeded_job)
    services.training_job_promote(job=succeeded_job)

    assert ModelVersion.objects.filter(training_jobs=succeeded_job).count() == 1
    assert ModelVersion.objects.filter(is_active=True).count() == 1


@pytest.mark.parametrize("status", [Status.QUEUED, Status.RUNNING, Status.FAILED, Status.CANCELLED])
def test_promote_rejects_unsucceeded_job(make_job, status):
    job = make_job(status)

    with pytest.raises(services.InvalidTransition, match="only a succeeded job"):
        services.training_job_promote(job=job)

    assert not ModelVersion.objects.filter(is_active=True).exists()


def test_promote_cancelled_job_explains_checkpoint(make_job, tmp_path):
    from ml.testing import make_tiny_checkpoint

    job = make_job(Status.RUNNING)
    model_dir = make_tiny_checkpoint(tmp_path / "best", class_names=["altar", "apse", "vault"])
    services.training_job_mark_cancelled(claim=job.claim, model_dir=model_dir, best_epoch=1)

    with pytest.raises(services.InvalidTransition, match="never scored on the test set"):
        services.training_job_promote(job=job)


def test_promote_rejects_missing_model_files(succeeded_job):
    (Path(succeeded_job.model_dir) / "model.safetensors").unlink()

    with pytest.raises(services.TrainingJobError, match="missing"):
        services.training_job_promote(job=succeeded_job)


def test_create_rejects_weights_file_that_is_not_weights(dataset, tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_text("plain text, not a checkpoint")

    with pytest.raises(services.InvalidJobSettings) as error:
        services.training_job_create(dataset=dataset, backbone="resnet18", weights_file=str(junk))

    assert error.value.errors["weights_file"].startswith(f"weights_file {junk} is not a PyTorch (.pth, .pt) or")


@pytest.mark.parametrize("kind", ["torch", "safetensors"])
def test_settings_accept_real_weights_files(dataset, tmp_path, kind):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / ("w.pth" if kind == "torch" else "w.safetensors")
    if kind == "torch":
        torch.save({"weight": torch.zeros(2)}, path)
    else:
        save_file({"weight": torch.zeros(2)}, str(path))

    errors = services.training_job_settings_errors(
        dataset=dataset, values={"backbone": "resnet18", "weights_file": str(path)}
    )

    assert "weights_file" not in errors
