"""Reads for uploads, predictions and model versions."""

from __future__ import annotations

from django.db.models import Count, F, Q, QuerySet

from classifier.models import ModelVersion, Prediction, Upload


def _upload_queryset() -> QuerySet[Upload]:
    return Upload.objects.select_related("stored_image", "latest_prediction", "latest_prediction__model_version")


def can_see_private(user, upload: Upload) -> bool:
    """Return whether ``user`` may see the original file and a hidden upload (owner and staff only)."""
    if not user.is_authenticated:
        return False
    return user.is_staff or upload.owner_id == user.pk


def _filtered(
    uploads: QuerySet[Upload], label: str | None, checked: bool | None, least_confident_first: bool
) -> QuerySet[Upload]:
    if label:
        uploads = uploads.with_label(label)
    if checked is not None:
        uploads = uploads.checked(checked)
    return uploads.least_confident_first() if least_confident_first else uploads.newest_first()


def upload_list_public(
    *, label: str | None = None, checked: bool | None = None, least_confident_first: bool = False
) -> QuerySet[Upload]:
    """Return the public gallery's uploads, newest first, optionally filtered by predicted label or checked state."""
    return _filtered(_upload_queryset().visible(), label, checked, least_confident_first)


def upload_list_for_owner(
    user, *, label: str | None = None, checked: bool | None = None, least_confident_first: bool = False
) -> QuerySet[Upload]:
    """Return a user's own uploads, hidden ones included, newest first, optionally filtered as the gallery is."""
    return _filtered(_upload_queryset().filter(owner_id=user.pk), label, checked, least_confident_first)


def upload_get_for_user(upload_id: int, user) -> Upload | None:
    """Return the upload if ``user`` may see it; hidden uploads only for owner and staff."""
    upload = _upload_queryset().filter(pk=upload_id).first()
    if upload is None:
        return None
    if upload.is_hidden and not can_see_private(user, upload):
        return None
    return upload


def uploads_by_ids_for_user(upload_ids: list[int], user) -> list[Upload]:
    uploads = {upload.pk: upload for upload in _upload_queryset().filter(pk__in=upload_ids)}
    visible = []
    for upload_id in upload_ids:
        upload = uploads.get(upload_id)
        if upload is not None and (not upload.is_hidden or can_see_private(user, upload)):
            visible.append(upload)
    return visible


def model_version_get_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def model_version_active_id() -> int | None:
    """Return the active version's id with one small query; workers call it before each batch."""
    return ModelVersion.objects.filter(is_active=True).values_list("pk", flat=True).first()


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.order_by("-is_active", "-created", "-id")


def class_names() -> list[str]:
    """Class names of the active model, or the dataset's ten classes when none is registered."""
    active = model_version_get_active()
    if active is not None and active.class_names:
        return list(active.class_names)

    from ml.data import AHE_CLASSES

    return list(AHE_CLASSES)


def _checked_and_predicted() -> QuerySet[Upload]:
    return Upload.objects.checked(True).filter(latest_prediction__status=Prediction.Status.DONE)


def verified_agreement() -> list[dict]:
    """Return, per model version, how many staff-checked photos it predicted and how many it got right.

    Only each photo's latest finished prediction counts, hidden photos
    included. Rows are sorted by version, the active one first.
    """
    rows = (
        _checked_and_predicted()
        .values("latest_prediction__model_version__version", "latest_prediction__model_version__is_active")
        .annotate(checked=Count("pk"), agreed=Count("pk", filter=Q(latest_prediction__label=F("verified_label"))))
    )
    result = [
        {
            "version": row["latest_prediction__model_version__version"] or "",
            "is_active": bool(row["latest_prediction__model_version__is_active"]),
            "checked": row["checked"],
            "agreed": row["agreed"],
            "accuracy": row["agreed"] / row["checked"],
        }
        for row in rows
    ]
    return sorted(result, key=lambda row: (not row["is_active"], row["version"]))


def verified_pairs(version: ModelVersion) -> list[tuple[str, str]]:
    """Return (checked label, predicted label) for each staff-checked photo whose latest prediction is by ``version``."""
    rows = (
        _checked_and_predicted()
        .filter(latest_prediction__model_version=version)
        .order_by("pk")
        .values_list("verified_label", "latest_prediction__label")
    )
    return list(rows)
