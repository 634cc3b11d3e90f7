from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


# Start of a prediction's error when the worker could not load the active model.
MODEL_LOAD_FAILURE = "the model could not be loaded"


class ModelVersion(models.Model):
    """A trained model directory (``model.safetensors`` + ``model.json``) that can serve predictions."""

    version = models.CharField(max_length=200, unique=True, help_text="Version string from model.json.")
    model_dir = models.CharField(max_length=1000, help_text="Folder that contains model.safetensors and model.json.")
    is_active = models.BooleanField(default=False)
    is_default = models.BooleanField(default=False, help_text="The model committed with the code.")
    class_names = models.JSONField(default=list)
    metrics = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model_version"),
        ]

    def __str__(self) -> str:
        return self.version


class StoredImage(models.Model):
    """The files of one distinct image content, shared by every upload of the same bytes.

    ``original`` keeps the uploaded bytes, EXIF included, and is served only
    to the uploader and staff. ``display`` and ``thumbnail`` are re-encoded
    JPEG copies without metadata, for the public pages.
    """

    sha256 = models.CharField(max_length=64, unique=True)
    original = models.FileField(max_length=300)
    display = models.FileField(max_length=300)
    thumbnail = models.FileField(max_length=300)
    format = models.CharField(max_length=16, help_text="Pillow format name, e.g. JPEG or HEIF.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    byte_size = models.PositiveBigIntegerField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.format} {self.width}x{self.height})"


class UploadQuerySet(models.QuerySet):
    def visible(self) -> UploadQuerySet:
        return self.filter(is_hidden=False)

    def newest_first(self) -> UploadQuerySet:
        return self.order_by("-created", "-id")

    def with_label(self, label: str) -> UploadQuerySet:
        return self.filter(latest_prediction__status=Prediction.Status.DONE, latest_prediction__label=label)

    def least_confident_first(self) -> UploadQuerySet:
        """Order finished predictions by the probability of their label, lowest first, then the rest, newest first."""
        return self.order_by(F("latest_prediction__confidence").asc(nulls_last=True), "-created", "-id")

    def checked(self, checked: bool) -> UploadQuerySet:
        """Keep the uploads whose element staff confirmed (True) or not yet (False)."""
        return self.exclude(verified_label="") if checked else self.filter(verified_label="")


class Upload(models.Model):
    """One photo uploaded by a visitor: what the gallery and the API call an image."""

    stored_image = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="uploads")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads"
    )
    original_name = models.CharField(max_length=255, blank=True)
    is_hidden = models.BooleanField(
        "hidden", default=False, help_text="Hidden uploads are left out of the public gallery and API."
    )
    # The most recent prediction, kept here so the gallery filters by label
    # with one join.
    latest_prediction = models.ForeignKey(
        "Prediction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    imported = models.BooleanField(
        default=False, help_text="Uploaded from the server's disk by manage.py import_photos."
    )
    # The element a staff member confirmed, whatever the model predicted.
    verified_label = models.CharField(
        "checked label",
        max_length=100,
        blank=True,
        db_index=True,
        help_text="Element confirmed by staff; empty until checked.",
    )
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="checked by",
    )
    verified_at = models.DateTimeField("checked at", null=True, blank=True)

    objects = UploadQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"upload {self.pk} ({self.original_name})"


class Prediction(models.Model):
    """One run of a model on one upload; re-running adds a new row."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="predictions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    label = models.CharField(max_length=100, blank=True, db_index=True)
    probabilities = models.JSONField(default=dict, blank=True)
    confidence = models.FloatField(
        null=True, blank=True, db_index=True, help_text="Probability of the predicted label, for sorting."
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="predictions"
    )
    error = models.TextField(blank=True)
    # A worker owns a pending prediction while claim_token is set; the claim
    # expires after settings.INFERENCE_CLAIM_TIMEOUT (the worker died).
    claim_token = models.CharField(max_length=64, blank=True, db_index=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When a task message was last sent.")
    attempts = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    inference_ms = models.FloatField(null=True, blank=True, help_text="Model time for the batch, per image, in ms.")

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["status", "claimed_at"], name="prediction_status_claim")]

    def __str__(self) -> str:
        return f"prediction {self.pk} of upload {self.upload_id}: {self.status}"

    @property
    def public_error(self) -> str:
        """The failure reason for visitors: a model that failed to load is named without its server paths."""
        if self.error.startswith(MODEL_LOAD_FAILURE):
            return f"{MODEL_LOAD_FAILURE}, so staff have to fix or replace it. Try again later."
        return self.error

    @property
    def latency_ms(self) -> float | None:
        """Milliseconds from the upload to the stored result."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.created).total_seconds() * 1000

    @property
    def ordered_probabilities(self) -> dict[str, float]:
        """The probabilities in the model's class order (PostgreSQL's jsonb does not keep key order)."""
        order = self.model_version.class_names if self.model_version else []
        known = [name for name in order if name in self.probabilities]
        rest = sorted(name for name in self.probabilities if name not in order)
        return {name: self.probabilities[name] for name in known + rest}

    def top_probabilities(self, count: int = 3) -> list[tuple[str, float]]:
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return ranked[:count]
