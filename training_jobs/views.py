"""HTML pages, chart JSON and downloads of training jobs.

Anyone may read succeeded jobs. Queued, running, failed and cancelled jobs
are visible to staff only (logged in, or with a staff API token), and other
users get 404 for them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from classifier import selectors as classifier_selectors
from heritage_site.api import request_user
from heritage_site.decorators import staff_required
from training_jobs import presenters, selectors, services
from training_jobs.models import ClassMetric, TrainingJob
from training_jobs.reference import REFERENCES

logger = logging.getLogger(__name__)

MODEL_FILES = ("model.safetensors", "model.json")
SAMPLE_PAGE_LIMIT = 200


def _is_staff(request: HttpRequest) -> bool:
    """Whether a staff member sent the request, logged in or with an API token."""
    return request_user(request).is_staff


def _get_job(request: HttpRequest, job_id: int) -> TrainingJob:
    job = selectors.training_job_get(job_id=job_id, include_unfinished=_is_staff(request))
    if job is None:
        raise Http404(f"Training job {job_id} not found.")
    if job.status == TrainingJob.Status.RUNNING:
        # No process watches a dead worker's job, so readers check its heartbeat.
        services.training_job_fail_lost()
        job.refresh_from_db()
    return job


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    jobs = list(selectors.training_job_list(include_unfinished=_is_staff(request))[:100])
    served = presenters.served_model_results()
    checked_report = presenters.checked_uploads_report()
    context = {
        "jobs": jobs,
        "succeeded": [job for job in jobs if job.status == TrainingJob.Status.SUCCEEDED],
        "references": REFERENCES,
        "served": served,
        "checked": classifier_selectors.verified_agreement(),
        "checked_rows": _class_rows(checked_report),
        "checked_report": checked_report,
        "checked_heatmap": _heatmap(checked_report),
        "served_rows": _class_rows(served["test"]) if served else [],
        "served_heatmap": _heatmap(served["test"]) if served else None,
    }
    return render(request, "training_jobs/dashboard.html", context)


@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job(request, job_id)
    test = selectors.training_job_split_metrics(job, split=ClassMetric.Split.TEST)
    val = selectors.training_job_split_metrics(job, split=ClassMetric.Split.VAL)
    context = {
        "job": job,
        "progress": presenters.job_progress(job),
        "test": test,
        "val": val,
        "test_rows": _class_rows(test),
        "val_rows": _class_rows(val),
        "test_heatmap": _heatmap(test),
        "val_heatmap": _heatmap(val),
        "downloads": presenters.job_downloads(job),
        "is_staff": _is_staff(request),
        "can_cancel": job.status in (TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING)
        and not job.cancel_requested,
        "can_promote": job.status == TrainingJob.Status.SUCCEEDED
        and not (job.model_version is not None and job.model_version.is_active),
        "comparable": job.scored_on_ahe_test_split,
    }
    return render(request, "training_jobs/job_detail.html", context)


def _class_rows(metrics: dict | None) -> list[dict]:
    """Build per-class rows with the published F1 beside each class, marked where the job beats Llamas et al. (2017)."""
    if not metrics:
        return []
    paper, hrnet = REFERENCES
    rows = []
    for class_name, scores in metrics["per_class"].items():
        paper_f1 = paper.f1.get(class_name)
        rows.append(
            {
                "class_name": class_name,
                **scores,
                "paper_f1": paper_f1,
                "hrnet_f1": hrnet.f1.get(class_name),
                "beats_paper": paper_f1 is not None and scores["f1"] > paper_f1,
            }
        )
    return rows


def _heatmap(metrics: dict | None) -> list[dict] | None:
    """Turn a confusion matrix into rows of cells with a 0-1 shade, relative to the row's total."""
    if not metrics or not metrics.get("confusion_matrix"):
        return None
    names = metrics["class_names"]
    rows = []
    for true_name, counts in zip(names, metrics["confusion_matrix"]):
        total = sum(counts) or 1
        cells = [
            {
                "count": count,
                "shade": round(count / total, 3),
                "predicted": predicted,
                "diagonal": predicted == true_name,
            }
            for predicted, count in zip(names, counts)
        ]
        rows.append({"true": true_name, "cells": cells, "total": sum(counts)})
    return rows


@never_cache
@require_GET
def job_progress_json(request: HttpRequest, job_id: int) -> JsonResponse:
    """Return the status, progress bars and per-epoch chart data that the job page polls."""
    job = _get_job(request, job_id)
    return JsonResponse(presenters.job_progress(job))


@require_GET
def job_samples(request: HttpRequest, job_id: int) -> HttpResponse:
    """List the test images of one confusion-matrix cell."""
    job = _get_job(request, job_id)
    true_class = request.GET.get("true", "")
    predicted_class = request.GET.get("pred", "")
    if true_class not in job.class_names or predicted_class not in job.class_names:
        raise Http404("Unknown class in the confusion-matrix cell.")

    samples = selectors.training_job_samples(job, true_class=true_class, predicted_class=predicted_class)
    context = {
        "job": job,
        "true_class": true_class,
        "predicted_class": predicted_class,
        "count": samples.count(),
        "samples": samples[:SAMPLE_PAGE_LIMIT],
        "limit": SAMPLE_PAGE_LIMIT,
    }
    return render(request, "training_jobs/samples.html", context)


@require_GET
def sample_image(request: HttpRequest, job_id: int, sample_id: int) -> FileResponse:
    """Serve one test image of a job's dataset, only if it lies inside that dataset's folder."""
    job = _get_job(request, job_id)
    sample = job.samples.filter(pk=sample_id).first()
    if sample is None:
        raise Http404("Sample not found.")

    # The containment check is on the path as written, not on where symlinks
    # lead: datasets such as export_checked_photos --base-dataset link their
    # images from elsewhere, and the sample path comes from the dataset's own listing.
    root = Path(os.path.abspath(job.dataset.path))
    path = Path(os.path.normpath(root / sample.path))
    if not path.is_relative_to(root) or not path.is_file():
        raise Http404("The image file is no longer in the dataset folder.")
    return FileResponse(path.open("rb"))


@require_GET
def job_metrics_json(request: HttpRequest, job_id: int) -> JsonResponse:
    job = _get_job(request, job_id)
    if job.test_accuracy is None:
        raise Http404("This job has no metrics yet.")

    data = presenters.job_detail(job, include_log=False)
    response = JsonResponse(data, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="training-job-{job.pk}-metrics.json"'
    return response


@require_GET
def job_metrics_csv(request: HttpRequest, job_id: int) -> HttpResponse:
    """Per-class precision, recall, F1 and support of both splits, one row per split and class."""
    job = _get_job(request, job_id)
    if job.test_accuracy is None:
        raise Http404("This job has no metrics yet.")

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["job", "split", "class", "precision", "recall", "f1", "support"])
    for split in (ClassMetric.Split.TEST, ClassMetric.Split.VAL):
        metrics = selectors.training_job_split_metrics(job, split=split)
        if metrics is None:
            continue
        for class_name, scores in metrics["per_class"].items():
            writer.writerow(
                [job.pk, split, class_name, scores["precision"], scores["recall"], scores["f1"], scores["support"]]
            )
        writer.writerow([job.pk, split, "accuracy", "", "", metrics["accuracy"], ""])
        writer.writerow([job.pk, split, "macro_avg", "", "", metrics["macro_f1"], ""])

    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="training-job-{job.pk}-metrics.csv"'
    return response


@require_GET
def job_model_file(request: HttpRequest, job_id: int, filename: str) -> FileResponse:
    job = _get_job(request, job_id)
    if filename not in MODEL_FILES or not job.model_dir:
        raise Http404("Model file not found.")

    path = Path(job.model_dir) / filename
    if not path.is_file():
        raise Http404("The model file is no longer on the server.")
    download_name = f"training-job-{job.pk}-{filename}"
    if filename == "model.json" and not _is_staff(request):
        # Server paths are for staff, so visitors get the description with folder names only.
        description = presenters.public_model_description(json.loads(path.read_text()))
        response = HttpResponse(json.dumps(description, indent=1), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{download_name}"'
        return response
    return FileResponse(path.open("rb"), as_attachment=True, filename=download_name)


@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    ids = request.GET.get("ids", "")
    if not ids and request.GET.getlist("job"):
        ids = ",".join(request.GET.getlist("job"))
    error = ""
    try:
        jobs = selectors.comparison_jobs(ids)
    except ValueError as exc:
        error = str(exc)
        jobs = selectors.comparison_jobs("")

    context = {
        "table": selectors.comparison_table(jobs),
        "settings": presenters.settings_comparison(list(jobs)),
        "jobs": jobs,
        "ids": ",".join(str(job.pk) for job in jobs),
        "error": error,
        "available": selectors.training_job_list(include_unfinished=False)[:50],
    }
    return render(request, "training_jobs/compare.html", context)


@require_GET
def compare_json(request: HttpRequest) -> JsonResponse:
    """Per-class test F1 of the references and the selected jobs, for the comparison bar chart."""
    try:
        jobs = selectors.comparison_jobs(request.GET.get("ids", ""))
    except ValueError as error:
        return JsonResponse({"error": {"code": "invalid", "message": str(error)}}, status=400)
    return JsonResponse(selectors.comparison_table(jobs))


@staff_required
@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job(request, job_id)
    try:
        job = services.training_job_cancel(job=job)
    except services.InvalidTransition as error:
        messages.error(request, str(error))
    else:
        if job.status == TrainingJob.Status.CANCELLED:
            messages.success(request, f"Training job {job.pk} cancelled.")
        else:
            messages.success(
                request,
                f"Training job {job.pk} will stop at the next batch. The best epoch saved so far, if any, is kept.",
            )
    return redirect("training_jobs:job-detail", job_id=job.pk)


@staff_required
@require_http_methods(["GET", "POST"])
def job_promote(request: HttpRequest, job_id: int) -> HttpResponse:
    """Compare the job with the active model (GET), then make it serve predictions (POST)."""
    job = _get_job(request, job_id)
    if request.method == "GET":
        return render(request, "training_jobs/promote.html", {"job": job, **presenters.active_model_summary(job)})
    try:
        job = services.training_job_promote(job=job)
    except services.TrainingJobError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Model version {job.model_version.version} now serves predictions.")
    return redirect("training_jobs:job-detail", job_id=job.pk)
