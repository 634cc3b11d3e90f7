"""CSV export of uploads and their latest predictions, for cataloguing tools."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from django.urls import reverse

from classifier.models import Prediction, Upload

# Rows fetched from the database at a time, because an export may list every upload.
CHUNK_SIZE = 500


class _Echo:
    """A file-like object whose write returns the text, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def upload_csv_rows(
    uploads: Iterable[Upload], class_names: list[str], *, build_url, owner_columns: bool, full_errors: bool = False
) -> Iterator[str]:
    """Yield CSV lines: a header, then one line per upload with its latest prediction.

    `build_url` turns a path into an absolute URL. Original file names are
    private to the uploader and staff, so `owner_columns` adds them only for
    an export of one's own uploads, with a `hidden` column (yes or no), since
    only such an export lists hidden photos. A failed prediction's `error` is
    the reason visitors see (``Prediction.public_error``) unless `full_errors`,
    which staff get.
    """
    writer = csv.writer(_Echo())
    header = ["id"] + (["file", "hidden"] if owner_columns else []) + [
        "uploaded_at", "width", "height", "status", "label", "confidence", "model_version", "predicted_at", "error",
        "verified_label", "page_url", "image_url",
    ]  # fmt: skip
    yield writer.writerow(header + [f"p_{name}" for name in class_names])

    for upload in uploads:
        prediction = upload.latest_prediction
        done = prediction is not None and prediction.status == Prediction.Status.DONE
        probabilities = prediction.probabilities if done else {}
        owner_values = []
        if owner_columns:
            owner_values = [_plain_text(upload.original_name), "yes" if upload.is_hidden else "no"]
        row = [
            upload.pk,
            *owner_values,
            upload.created.isoformat(),
            upload.stored_image.width,
            upload.stored_image.height,
            prediction.status if prediction else Prediction.Status.PENDING,
            prediction.label if done else "",
            _format(probabilities.get(prediction.label)) if done else "",
            prediction.model_version.version if done and prediction.model_version else "",
            prediction.finished_at.isoformat() if done and prediction.finished_at else "",
            _error_text(prediction, full_errors),
            upload.verified_label,
            build_url(reverse("classifier:detail", args=[upload.pk])),
            build_url(reverse("classifier:display-file", args=[upload.pk])),
        ]  # fmt: skip
        yield writer.writerow(row + [_format(probabilities.get(name)) for name in class_names])


def _error_text(prediction: Prediction | None, full: bool) -> str:
    if prediction is None or prediction.status != Prediction.Status.FAILED:
        return ""
    return prediction.error if full else prediction.public_error


def _plain_text(value: str) -> str:
    """Keep spreadsheets from running a file name as a formula (CSV injection)."""
    return "'" + value if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


def _format(probability: float | None) -> str:
    return "" if probability is None else f"{probability:.6f}"
