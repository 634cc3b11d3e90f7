"""Datasets, training jobs and the metrics they produce.

A `TrainingJob` row is the state machine of one run. Only `services.py`
changes its status, and every change is a conditional UPDATE on the current
status, so two processes can never both move the same job.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.template.defaultfilters import pluralize


class Dataset(models.Model):
    """A folder on the server with `train/` and `test/`, one subfolder per class."""

    name = models.CharField(max_length=100, unique=True)
    path = models.CharField(max_length=500, unique=True, help_text="Absolute path of the dataset folder on the server.")
    class_names = models.JSONField(default=list, help_text="Class folder names in sorted order.")
    counts = models.JSONField(
        default=dict, help_text='Images per split and class: {"train": {CLASS: n}, "test": {...}}.'
    )
    unreadable = models.JSONField(
        default=list, help_text="Paths, relative to the dataset folder, of files that are not readable images."
    )
    missing = models.JSONField(
        default=dict, help_text='Classes absent from one split: {"train": [CLASS], "test": [CLASS]}.'
    )
    scanned_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def train_images(self) -> int:
        return sum(self.counts.get("train", {}).values())

    @property
    def test_images(self) -> int:
        return sum(self.counts.get("test", {}).values())

    @property
    def has_ahe_test_set(self) -> bool:
        """Whether the test split is AHE's official one, on which the published F1 scores were measured."""
        from ml.reference import is_ahe_test_set

        return is_ahe_test_set(self.counts.get("test", {}))

    @property
    def is_complete(self) -> bool:
        """Whether every class has images in both splits."""
        return not any(self.missing.get(split) for split in ("train", "test"))

    @property
    def problems(self) -> str:
        """Describe what the last scan found wrong, in sentences; empty when nothing was."""
        sentences = []
        gaps = "; ".join(f"{split}: {', '.join(names)}" for split, names in self.missing.items() if names)
        if gaps:
            sentences.append(
                f"Classes without images ({gaps}). Training jobs cannot use this dataset until each class "
                "has images in both train/ and test/."
            )
        if self.unreadable:
            count = len(self.unreadable)
            listed = ", ".join(self.unreadable[:5]) + (", ..." if count > 5 else "")
            sentences.append(
                f"{count} unreadable image file{pluralize(count)}: {listed}. "
                "Training skips them, and stops if there are too many."
            )
        return " ".join(sentences)


class TrainingJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Mode(models.TextChoices):
        FINETUNE = "finetune", "Full fine-tune"
        LINEAR_PROBE = "linear-probe", "Linear probe"

    class Phase(models.TextChoices):
        WAITING = "waiting"
        PREPARING = "preparing"
        TRAINING = "training"
        EVALUATING = "evaluating"
        DONE = "done"

    FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # Hyper-parameters, copied into ml.config.TrainConfig by the task.
    backbone = models.CharField(max_length=100)
    weights_file = models.CharField(
        max_length=500,
        blank=True,
        help_text="Pretrained weights for a timm backbone that no installed package provides.",
    )
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.FINETUNE)
    epochs = models.PositiveIntegerField()
    batch_size = models.PositiveIntegerField()
    learning_rate = models.FloatField()
    image_size = models.PositiveIntegerField()
    seed = models.IntegerField()
    split_seed = models.IntegerField(
        "validation split seed", null=True, blank=True, help_text="Seed of the validation split; empty uses the seed."
    )
    ema_decay = models.FloatField(
        "EMA decay",
        null=True,
        blank=True,
        help_text="Decay per batch of a moving average of the weights; empty turns it off.",
    )
    patience = models.PositiveIntegerField(
        "early-stopping patience",
        null=True,
        blank=True,
        help_text="Epochs without a better validation macro-F1 before stopping; empty turns it off.",
    )

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.WAITING)
    cancel_requested = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the worker that runs the job."
    )
    worker = models.CharField(
        max_length=200, blank=True, help_text="Celery hostname of the worker that claimed the job."
    )
    claim_token = models.CharField(
        max_length=32,
        blank=True,
        help_text="Random token of the current claim; writes from an older claim are ignored.",
    )

    # Live progress, written by the worker at most every few seconds.
    epoch = models.PositiveIntegerField(default=0, help_text="Current epoch, counted from 1.")
    batch = models.PositiveIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0, help_text="Batches per epoch.")
    last_loss = models.FloatField(null=True, blank=True)

    # Outcome.
    failure_reason = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    model_dir = models.CharField(max_length=500, blank=True, help_text="Folder with model.safetensors and model.json.")
    best_epoch = models.PositiveIntegerField(null=True, blank=True)
    class_names = models.JSONField(default=list, blank=True)
    test_accuracy = models.FloatField(null=True, blank=True)
    test_macro_f1 = models.FloatField(null=True, blank=True)
    test_confusion_matrix = models.JSONField(
        null=True, blank=True, help_text="Rows are true classes, columns predicted classes, in class_names order."
    )
    test_split_fingerprint = models.CharField(
        max_length=64,
        blank=True,
        help_text="Hash of the scored test photos and their labels (ml.data.content_fingerprint).",
    )
    val_accuracy = models.FloatField(null=True, blank=True)
    val_macro_f1 = models.FloatField(null=True, blank=True)
    val_confusion_matrix = models.JSONField(null=True, blank=True)
    model_version = models.ForeignKey(
        "classifier.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_jobs",
        help_text="The model version this job's model was registered as when promoted.",
    )
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Training job {self.pk} ({self.backbone}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES

    @property
    def scored_on_ahe_test_split(self) -> bool:
        """Whether the test scores were measured on AHE's official test split, like the published ones.

        Jobs scored before fingerprints were recorded fall back to the
        dataset's per-class test counts.
        """
        from ml.reference import is_ahe_test_split

        if self.test_split_fingerprint:
            return is_ahe_test_split(self.test_split_fingerprint)
        return self.dataset.has_ahe_test_set

    @property
    def progress(self) -> float:
        """Fraction of all training batches done, from 0 to 1."""
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        if not self.epochs or not self.batches or not self.epoch:
            return 0.0
        done = (self.epoch - 1) + min(self.batch, self.batches) / self.batches
        return max(0.0, min(1.0, done / self.epochs))

    @property
    def epoch_progress(self) -> float:
        """Fraction of the current epoch's batches done, from 0 to 1."""
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        if not self.batches:
            return 0.0
        return max(0.0, min(1.0, self.batch / self.batches))


class EpochMetric(models.Model):
    """Training loss and validation scores after one epoch."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="epoch_metrics")
    epoch = models.PositiveIntegerField()
    train_loss = models.FloatField()
    val_accuracy = models.FloatField()
    val_macro_f1 = models.FloatField()
    learning_rate = models.FloatField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="Wall-clock time of the epoch.")

    class Meta:
        ordering = ["job", "epoch"]
        constraints = [models.UniqueConstraint(fields=["job", "epoch"], name="epoch_metric_unique_epoch")]

    def __str__(self) -> str:
        return f"job {self.job_id}, epoch {self.epoch}"


class ClassMetric(models.Model):
    """Precision, recall, F1 and support of one class on one split."""

    class Split(models.TextChoices):
        TEST = "test"
        VAL = "val"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="class_metrics")
    split = models.CharField(max_length=10, choices=Split.choices)
    class_name = models.CharField(max_length=100)
    precision = models.FloatField()
    recall = models.FloatField()
    f1 = models.FloatField()
    support = models.PositiveIntegerField()

    class Meta:
        ordering = ["job", "split", "class_name"]
        constraints = [models.UniqueConstraint(fields=["job", "split", "class_name"], name="class_metric_unique_class")]

    def __str__(self) -> str:
        return f"job {self.job_id}, {self.split} scores of {self.class_name}"


class SamplePrediction(models.Model):
    """One test image with its true and predicted class, for the confusion-matrix drill-down."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="samples")
    path = models.CharField(max_length=500, help_text="Path relative to the dataset folder.")
    true_class = models.CharField(max_length=100)
    predicted_class = models.CharField(max_length=100)

    class Meta:
        ordering = ["job", "path"]
        indexes = [models.Index(fields=["job", "true_class", "predicted_class"], name="sample_cell_idx")]

    def __str__(self) -> str:
        return f"job {self.job_id}, {self.path}: {self.true_class} predicted as {self.predicted_class}"
