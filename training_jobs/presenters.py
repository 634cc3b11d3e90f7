"""Plain-dict views of jobs, shared by the API, the JSON chart endpoints and the pages."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from django.urls import reverse

from training_jobs import selectors
from training_jobs.models import ClassMetric, TrainingJob


def job_settings(job: TrainingJob) -> dict[str, Any]:
    return {
        "backbone": job.backbone,
        "weights_file": job.weights_file,
        "mode": job.mode,
        "epochs": job.epochs,
        "batch_size": job.batch_size,
        "learning_rate": job.learning_rate,
        "image_size": job.image_size,
        "seed": job.seed,
        "split_seed": job.split_seed,
        "ema_decay": job.ema_decay,
        "patience": job.patience,
    }


def job_summary(job: TrainingJob) -> dict[str, Any]:
    """Status, settings and headline scores of a job, without per-epoch or per-class rows."""
    return {
        "id": job.pk,
        "url": reverse("training_jobs:job-detail", args=[job.pk]),
        "status": job.status,
        "phase": job.phase,
        "dataset": {"id": job.dataset_id, "name": job.dataset.name},
        "config": job_settings(job),
        "progress": round(job.progress, 4),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "test_accuracy": job.test_accuracy,
        "test_macro_f1": job.test_macro_f1,
        "promoted_at": job.promoted_at,
    }


def job_progress(job: TrainingJob) -> dict[str, Any]:
    """Return what the job page polls: status, progress bars, timing and the per-epoch chart data."""
    timing = selectors.training_job_timing(job)
    return {
        "id": job.pk,
        "status": job.status,
        "phase": job.phase,
        "is_finished": job.is_finished,
        "cancel_requested": job.cancel_requested,
        "progress": round(job.progress, 4),
        "epoch_progress": round(job.epoch_progress, 4),
        "current_epoch": job.epoch,
        "total_epochs": job.epochs,
        "batch": job.batch,
        "batches": job.batches,
        "last_loss": job.last_loss,
        "queue_position": selectors.training_job_queue_position(job),
        "elapsed_seconds": timing["elapsed_seconds"],
        "remaining_seconds": timing["remaining_seconds"],
        "failure_reason": job.failure_reason,
        "epochs": selectors.training_job_epochs(job),
    }


def job_detail(job: TrainingJob, *, include_log: bool) -> dict[str, Any]:
    """Return everything known about a job. `test_metrics` and `val_metrics` are None until it succeeded."""
    detail = job_summary(job) | job_progress(job)
    detail["best_epoch"] = job.best_epoch
    detail["test_metrics"] = selectors.training_job_split_metrics(job, split=ClassMetric.Split.TEST)
    detail["test_split_fingerprint"] = job.test_split_fingerprint
    detail["comparable_with_published"] = job.test_accuracy is not None and job.scored_on_ahe_test_split
    detail["val_metrics"] = selectors.training_job_split_metrics(job, split=ClassMetric.Split.VAL)
    detail["downloads"] = job_downloads(job)
    if include_log:
        detail["log_tail"] = job.log_tail
    return detail


def job_downloads(job: TrainingJob) -> dict[str, str]:
    links = {}
    if job.test_accuracy is not None:
        links["metrics_csv"] = reverse("training_jobs:job-metrics-csv", args=[job.pk])
        links["metrics_json"] = reverse("training_jobs:job-metrics-json", args=[job.pk])
    # A cancelled job keeps its best checkpoint, and only staff can see such a job.
    if job.model_dir:
        links["model_weights"] = reverse("training_jobs:job-model-file", args=[job.pk, "model.safetensors"])
        links["model_description"] = reverse("training_jobs:job-model-file", args=[job.pk, "model.json"])
    return links


def dataset_summary(dataset, *, include_path: bool) -> dict[str, Any]:
    summary = {
        "id": dataset.pk,
        "name": dataset.name,
        "class_names": dataset.class_names,
        "counts": dataset.counts,
        "train_images": dataset.train_images,
        "test_images": dataset.test_images,
        "unreadable": len(dataset.unreadable),
        "missing": dataset.missing,
        "scanned_at": dataset.scanned_at,
    }
    if include_path:
        summary["path"] = dataset.path
        summary["unreadable_files"] = dataset.unreadable
    return summary


def _training_job_of(version) -> TrainingJob | None:
    """Return the succeeded job whose promotion registered `version`, if any."""
    return version.training_jobs.filter(status=TrainingJob.Status.SUCCEEDED).first()


def active_model_summary(job: TrainingJob) -> dict[str, Any]:
    """Describe the model that serves predictions now, for `job`'s promote confirmation.

    Test scores come from the training job that made the active model, or
    from its model.json (`python -m ml evaluate --record`). They compare
    with `job`'s only when both were measured on the same photos.
    """
    from classifier.selectors import model_version_get_active

    active = model_version_get_active()
    if active is None:
        return {"active": None, "active_test": None, "active_val_macro_f1": None, "same_test_photos": False}

    metrics = active.metrics or {}
    active_job = _training_job_of(active)
    if active_job is not None:
        test = {
            "accuracy": active_job.test_accuracy,
            "macro_f1": active_job.test_macro_f1,
            "fingerprint": active_job.test_split_fingerprint,
            "source": f"job {active_job.pk}",
        }
        val_macro_f1 = active_job.val_macro_f1
    else:
        recorded = metrics.get("test") or {}
        test = None
        if recorded.get("macro_f1") is not None:
            test = {
                "accuracy": recorded.get("accuracy"),
                "macro_f1": recorded["macro_f1"],
                "fingerprint": recorded.get("split_fingerprint", ""),
                "source": "model.json",
            }
        val_macro_f1 = (metrics.get("val") or {}).get("macro_f1")
    same_test_photos = bool(test and job.test_split_fingerprint and test["fingerprint"] == job.test_split_fingerprint)
    return {
        "active": active,
        "active_test": test,
        "active_val_macro_f1": val_macro_f1,
        "same_test_photos": same_test_photos,
    }


def served_model_results() -> dict[str, Any] | None:
    """Return the test results of the model that serves predictions, when its model.json records them.

    A model promoted from a job links to that job's page instead, so this
    covers the committed default model and versions registered by hand.
    Returns None when there is no active model or nothing to show.
    """
    from classifier.services import model_version_ensure_default
    from ml.reference import is_ahe_test_split

    # Registers the committed default model on a fresh database, as the
    # models API does, and picks up scores recorded in its model.json since.
    active = model_version_ensure_default()
    if active is None:
        return None
    job = _training_job_of(active)
    test = (active.metrics or {}).get("test") or {}
    if job is None and not test.get("per_class"):
        return None
    return {
        "version": active,
        "job": job,
        "test": test if job is None else None,
        "comparable": job is None and is_ahe_test_split(test.get("split_fingerprint", "")),
    }


def checked_uploads_report() -> dict[str, Any] | None:
    """Score the active model on the uploads staff checked, as ml.metrics.classification_report does.

    The report covers the classes that occur among those photos' checked or
    predicted labels. Returns None when there is no active model or it
    predicted no checked photo.
    """
    from classifier import selectors as classifier_selectors
    from ml.metrics import classification_report  # numpy only, no torch

    active = classifier_selectors.model_version_get_active()
    if active is None:
        return None
    pairs = classifier_selectors.verified_pairs(active)
    if not pairs:
        return None
    # Only the classes that occur, in the model's order, so a class with no
    # checked photo and no prediction does not show as a score of 0. A label
    # outside the model's classes (checked under an earlier model) comes last.
    present = {label for pair in pairs for label in pair}
    names = [name for name in active.class_names if name in present]
    names += sorted(present - set(names))
    index = {name: position for position, name in enumerate(names)}
    report = classification_report(
        [index[checked] for checked, _ in pairs], [index[predicted] for _, predicted in pairs], names
    )
    return {"version": active.version, **report}


# Columns of the comparison page's settings table: job_settings keys and their headings.
SETTINGS_COLUMNS = [
    ("dataset", "Dataset"),
    ("backbone", "Backbone"),
    ("mode", "Mode"),
    ("epochs", "Epochs"),
    ("batch_size", "Batch size"),
    ("learning_rate", "Learning rate"),
    ("image_size", "Image size"),
    ("seed", "Seed"),
    ("split_seed", "Split seed"),
    ("ema_decay", "EMA decay"),
    ("patience", "Patience"),
]


def settings_comparison(jobs: list[TrainingJob]) -> dict[str, Any]:
    """Return the jobs' settings side by side, each cell marked where the jobs do not all agree.

    An empty split seed is shown as the seed it falls back to, so two jobs
    validated on the same photos read the same.
    """
    values = []
    for job in jobs:
        settings = job_settings(job)
        settings["dataset"] = job.dataset.name
        settings["mode"] = job.get_mode_display()
        if settings["split_seed"] is None:
            settings["split_seed"] = settings["seed"]
        values.append(settings)
    differing = {key for key, _ in SETTINGS_COLUMNS if len({str(row[key]) for row in values}) > 1}
    rows = [
        {
            "job": job,
            "cells": [{"value": row[key], "differs": key in differing} for key, _ in SETTINGS_COLUMNS],
        }
        for job, row in zip(jobs, values, strict=True)
    ]
    return {"headings": [heading for _, heading in SETTINGS_COLUMNS], "rows": rows}


# Settings in model.json whose values are server paths.
_PATH_SETTINGS = ("data_dir", "out_dir", "weights_file", "init_from", "teacher")


def public_model_description(description: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a model.json with each server path cut to its last folder or file name."""
    public = copy.deepcopy(description)
    config = public.get("config")
    if isinstance(config, dict):
        for key in _PATH_SETTINGS:
            if isinstance(config.get(key), str):
                config[key] = Path(config[key]).name
    for role in ("init_from", "teacher"):
        origin = public.get(role)
        if isinstance(origin, dict) and isinstance(origin.get("path"), str):
            origin["path"] = Path(origin["path"]).name
    return public
