"""Writes and state transitions of datasets and training jobs.

Every status change is a conditional UPDATE that names the status it expects,
so a change that lost a race touches no row and is reported, never applied
twice. A running job also carries the random token of the claim that started
it: a worker whose job was taken away (marked lost, say) can no longer write
to the row.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from training_jobs import conf
from training_jobs.models import (
    ClassMetric,
    Dataset,
    EpochMetric,
    SamplePrediction,
    TrainingJob,
)
from ml.architectures import is_known_architecture, unknown_architecture_message
from training_jobs.selectors import (
    JOB_SETTINGS,
    LITE_BACKBONE_PACKAGES,
    backbone_choices,
    backbone_is_available,
    job_defaults,
)

logger = logging.getLogger(__name__)

Status = TrainingJob.Status
Phase = TrainingJob.Phase


class TrainingJobError(Exception):
    """An expected failure whose message is shown to the user as it is."""


class InvalidTransition(TrainingJobError):
    """The job's current status does not allow the requested change."""


class InvalidJobSettings(TrainingJobError):
    """One or more settings are invalid.

    `errors` maps each invalid field to its message, in the order checked,
    and `field` is the first of them.
    """

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors
        self.field = next(iter(errors))


class InvalidDataset(TrainingJobError):
    """A dataset folder does not have the expected layout."""


@dataclass(frozen=True)
class Claim:
    """Proof that one worker owns a running job."""

    job_id: int
    token: str


# Datasets


def dataset_register(*, path: str | Path, name: str = "") -> Dataset:
    """Scan a dataset folder and create its row, or refresh the row of a known path.

    Raises InvalidDataset when the folder lacks `train/` or `test/` or contains no class folder.
    """
    # ml.data reads folders with Pillow only, so the web process may call it.
    from ml.data import scan_dataset
    from ml.errors import DatasetError

    folder = Path(path).expanduser().resolve()
    try:
        scan = scan_dataset(folder)
    except DatasetError as error:
        raise InvalidDataset(f"Dataset {folder} cannot be registered: {error}.") from error
    if not scan["classes"]:
        raise InvalidDataset(f"Dataset {folder} cannot be registered: train/ and test/ contain no class folders.")
    # A rescan without a name keeps the one the dataset has; a new dataset is named after its folder.
    known = Dataset.objects.filter(path=str(folder)).values_list("name", flat=True).first()
    name = name.strip() or known or folder.name
    if Dataset.objects.filter(name=name).exclude(path=str(folder)).exists():
        raise InvalidDataset(f"A dataset named {name!r} already exists for another folder. Choose another name.")

    dataset, created = Dataset.objects.update_or_create(
        path=str(folder),
        defaults={
            "name": name,
            "class_names": scan["classes"],
            "counts": scan["counts"],
            "unreadable": scan["unreadable"],
            "missing": scan["missing"],
            "scanned_at": timezone.now(),
        },
    )
    logger.info(
        "dataset %s %s from %s: %d train and %d test images, %d unreadable",
        dataset.pk,
        "registered" if created else "rescanned",
        folder,
        dataset.train_images,
        dataset.test_images,
        len(scan["unreadable"]),
    )
    return dataset


# Launch and cancel


# Whole-number settings and their inclusive ranges; the image size range is
# TrainConfig's, so a job the form accepts is one the worker can train.
WHOLE_NUMBER_RANGES = {
    "epochs": (1, 1000),
    "batch_size": (2, 4096),
    "image_size": (32, 1024),
    "seed": (0, 2**31 - 1),
    "split_seed": (0, 2**31 - 1),
    "patience": (1, 1000),
}
# Settings that may be None: no split_seed means the seed, and no ema_decay or patience turns them off.
OPTIONAL_SETTINGS = {"split_seed", "ema_decay", "patience"}


def training_job_settings_errors(*, dataset: Dataset | None, values: dict[str, Any]) -> dict[str, str]:
    """Return a message for each invalid job setting, in form order; empty when all are valid.

    Settings missing from `values` are skipped, so a form or serializer can
    check the fields that parsed and report the others' own errors beside
    these. The rules of TrainConfig, which the worker applies, are checked
    only when every setting and the dataset are present and valid.
    """
    errors: dict[str, str] = {}
    if dataset is not None and not dataset.is_complete:
        missing = ", ".join(f"{split}: {', '.join(names)}" for split, names in dataset.missing.items() if names)
        errors["dataset"] = f"Dataset {dataset.name!r} has classes without images ({missing})."
    if "mode" in values and values["mode"] not in TrainingJob.Mode.values:
        errors["mode"] = f"mode must be one of {', '.join(TrainingJob.Mode.values)}, not {values['mode']!r}."
    backbone = values.get("backbone")
    if backbone and backbone not in LITE_BACKBONE_PACKAGES and not is_known_architecture(backbone):
        errors["backbone"] = unknown_architecture_message(backbone)
        if not values.get("weights_file"):
            errors["backbone"] += (
                f" Without a weights_file, only {', '.join(backbone_choices())} can be trained (their ImageNet "
                "weights are installed)."
            )
    weights_file = values.get("weights_file")
    if weights_file and not Path(weights_file).is_file():
        errors["weights_file"] = f"weights_file {weights_file} does not exist on the server."
    elif weights_file and not _looks_like_weights(Path(weights_file)):
        errors["weights_file"] = (
            f"weights_file {weights_file} is not a PyTorch (.pth, .pt) or .safetensors weights file: "
            "save one with torch.save(model.state_dict(), PATH) or safetensors."
        )
    elif not weights_file and backbone and "backbone" not in errors and not backbone_is_available(backbone):
        errors["backbone"] = (
            f"backbone {backbone!r} has no installed pretrained weights; "
            "pick an EfficientNet-Lite variant or give a weights_file."
        )

    for field, (low, high) in WHOLE_NUMBER_RANGES.items():
        if field not in values:
            continue
        value = values[field]
        if value is None and field in OPTIONAL_SETTINGS:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            errors[field] = f"{field} must be a whole number from {low} to {high}, not {value!r}."
    if "learning_rate" in values:
        learning_rate = values["learning_rate"]
        if not isinstance(learning_rate, (int, float)) or isinstance(learning_rate, bool) or not 0 < learning_rate <= 1:
            errors["learning_rate"] = f"learning_rate must be above 0 and at most 1, not {learning_rate!r}."
    ema_decay = values.get("ema_decay")
    if ema_decay is not None and (
        not isinstance(ema_decay, (int, float)) or isinstance(ema_decay, bool) or not 0 < ema_decay < 1
    ):
        errors["ema_decay"] = f"ema_decay must be above 0 and below 1, or empty to turn it off, not {ema_decay!r}."
    if errors or dataset is None or not set(JOB_SETTINGS) <= set(values):
        return errors

    # TrainConfig's own rules are the ones the worker applies, so check them
    # now rather than fail after the job was queued. Each of its
    # "; "-separated messages starts with the field name.
    from ml.config import TrainConfig
    from ml.errors import ConfigError

    config_values = {key: value for key, value in values.items() if key != "weights_file"}
    try:
        TrainConfig(
            data_dir=dataset.path, out_dir="", weights_file=values.get("weights_file") or None, **config_values
        ).validate()
    except ConfigError as error:
        for message in str(error).split("; "):
            errors.setdefault(message.split(" ", 1)[0], f"{message}.")
    return errors


def training_job_validate(*, dataset: Dataset, values: dict[str, Any]) -> None:
    """Check one job's settings. Raises InvalidJobSettings naming every invalid field."""
    errors = training_job_settings_errors(dataset=dataset, values=values)
    if errors:
        raise InvalidJobSettings(errors)


def training_job_create(*, dataset: Dataset, created_by=None, **job_settings: Any) -> TrainingJob:
    """Create a queued job and send it to the training queue once the transaction commits.

    Settings left out or None take the defaults that reproduce the default model.
    """
    unknown = set(job_settings) - set(job_defaults())
    if unknown:
        raise InvalidJobSettings({name: f"{name}: unknown job setting." for name in sorted(unknown)})
    values = job_defaults() | {key: value for key, value in job_settings.items() if value is not None}
    values["weights_file"] = values.get("weights_file") or ""
    training_job_validate(dataset=dataset, values=values)

    job = TrainingJob.objects.create(dataset=dataset, created_by=created_by, **values)
    logger.info("training job %s created on dataset %s (%s, epochs %s)", job.pk, dataset.pk, job.backbone, job.epochs)

    # The worker must find the row, so the message leaves only after the commit.
    transaction.on_commit(lambda: training_job_enqueue(job.pk))
    return job


def training_job_enqueue(job_id: int) -> None:
    """Send a job's id to the training queue. Duplicate messages are harmless: only one can claim."""
    from training_jobs.tasks import run_training_job

    run_training_job.apply_async(args=[job_id])
    logger.info("training job %s sent to the training queue", job_id)


def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """Cancel a queued job at once, or ask a running one to stop at the next batch.

    Raises InvalidTransition for a finished job.
    """
    now = timezone.now()
    if TrainingJob.objects.filter(pk=job.pk, status=Status.QUEUED).update(
        status=Status.CANCELLED, phase=Phase.DONE, cancel_requested=True, finished_at=now
    ):
        logger.info("training job %s cancelled while queued", job.pk)
    elif TrainingJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(cancel_requested=True):
        logger.info("training job %s asked to stop", job.pk)
    else:
        job.refresh_from_db()
        raise InvalidTransition(
            f"Training job {job.pk} has status {job.status}, but only queued or running jobs can be cancelled."
        )

    job.refresh_from_db()
    return job


# Worker side: claim, progress, outcome


def training_job_claim(*, job_id: int, worker: str) -> Claim | None:
    """Move a queued job to running for this worker. Returns None when another claim won."""
    token = secrets.token_hex(16)
    now = timezone.now()
    updated = TrainingJob.objects.filter(pk=job_id, status=Status.QUEUED, cancel_requested=False).update(
        status=Status.RUNNING,
        phase=Phase.PREPARING,
        started_at=now,
        heartbeat_at=now,
        worker=worker,
        claim_token=token,
    )
    if updated != 1:
        logger.info("training job %s not claimed by %s: it is no longer queued", job_id, worker)
        return None

    logger.info("training job %s claimed by %s", job_id, worker)
    return Claim(job_id=job_id, token=token)


def _owned(claim: Claim):
    return TrainingJob.objects.filter(pk=claim.job_id, status=Status.RUNNING, claim_token=claim.token)


def training_job_heartbeat(*, claim: Claim) -> bool:
    """Refresh the heartbeat. Returns False when the claim no longer owns the job."""
    return _owned(claim).update(heartbeat_at=timezone.now()) == 1


def training_job_set_phase(*, claim: Claim, phase: str) -> bool:
    return _owned(claim).update(phase=phase, heartbeat_at=timezone.now()) == 1


def training_job_record_progress(*, claim: Claim, epoch: int, batch: int, batches: int, loss: float | None) -> bool:
    """Store the position within training. Returns False when the claim no longer owns the job."""
    return (
        _owned(claim).update(
            phase=Phase.TRAINING,
            epoch=epoch,
            batch=batch,
            batches=batches,
            last_loss=loss,
            heartbeat_at=timezone.now(),
        )
        == 1
    )


def training_job_record_epoch(*, claim: Claim, epoch: int, metrics: dict[str, float]) -> bool:
    """Store one epoch's training loss and validation scores."""
    with transaction.atomic():
        if not _owned(claim).update(epoch=epoch, batch=F("batches"), heartbeat_at=timezone.now()):
            return False
        _epoch_metric_save(claim.job_id, epoch, metrics)
    return True


def _epoch_metric_save(job_id: int, epoch: int, metrics: dict[str, float]) -> None:
    EpochMetric.objects.update_or_create(
        job_id=job_id,
        epoch=epoch,
        defaults={
            "train_loss": metrics["train_loss"],
            "val_accuracy": metrics["val_accuracy"],
            "val_macro_f1": metrics["val_macro_f1"],
            "learning_rate": metrics.get("lr"),
            "seconds": metrics.get("seconds"),
        },
    )


def training_job_should_stop(*, claim: Claim) -> str:
    """Return why the job must stop now ("" to carry on): a cancel request, a lost claim or the time limit."""
    row = (
        TrainingJob.objects.filter(pk=claim.job_id)
        .values("status", "claim_token", "cancel_requested", "started_at")
        .first()
    )
    if row is None or row["status"] != Status.RUNNING or row["claim_token"] != claim.token:
        return "lost"
    if row["cancel_requested"]:
        return "cancel"
    if timezone.now() - row["started_at"] > timedelta(seconds=conf.time_limit_seconds()):
        return "time_limit"
    return ""


def training_job_succeed(*, claim: Claim, fit: dict[str, Any], test: dict[str, Any], log_tail: str = "") -> bool:
    """Store a finished job's model, validation and test metrics, and mark it succeeded.

    `fit` contains `model_dir`, `best_epoch`, `history` and `val_metrics` from
    `ml.training.fit`; `test` is `ml.evaluation.evaluate`'s result on the test split.
    Returns False, and stores nothing, when the claim no longer owns the job.
    """
    val = fit.get("val_metrics") or {}
    with transaction.atomic():
        updated = _owned(claim).update(
            status=Status.SUCCEEDED,
            phase=Phase.DONE,
            finished_at=timezone.now(),
            model_dir=str(fit["model_dir"]),
            best_epoch=fit.get("best_epoch"),
            class_names=list(test["class_names"]),
            test_accuracy=test["accuracy"],
            test_macro_f1=test["macro_f1"],
            test_confusion_matrix=test["confusion_matrix"],
            test_split_fingerprint=test.get("split_fingerprint", ""),
            val_accuracy=val.get("accuracy"),
            val_macro_f1=val.get("macro_f1"),
            val_confusion_matrix=val.get("confusion_matrix"),
            log_tail=log_tail,
        )
        if not updated:
            logger.warning(
                "training job %s finished after its claim was lost, so its results were not stored", claim.job_id
            )
            return False

        for epoch_index, metrics in enumerate(fit.get("history") or [], start=1):
            _epoch_metric_save(claim.job_id, int(metrics.get("epoch", epoch_index)), metrics)
        _class_metrics_save(claim.job_id, ClassMetric.Split.TEST, test["per_class"])
        if val.get("per_class"):
            _class_metrics_save(claim.job_id, ClassMetric.Split.VAL, val["per_class"])
        SamplePrediction.objects.filter(job_id=claim.job_id).delete()
        SamplePrediction.objects.bulk_create(
            [
                SamplePrediction(
                    job_id=claim.job_id, path=sample["path"], true_class=sample["true"], predicted_class=sample["pred"]
                )
                for sample in test.get("samples", [])
            ],
            batch_size=1000,
        )

    logger.info(
        "training job %s succeeded: test accuracy %.4f, macro-F1 %.4f",
        claim.job_id,
        test["accuracy"],
        test["macro_f1"],
    )
    return True


def _class_metrics_save(job_id: int, split: str, per_class: dict[str, dict[str, float]]) -> None:
    ClassMetric.objects.filter(job_id=job_id, split=split).delete()
    ClassMetric.objects.bulk_create(
        [
            ClassMetric(
                job_id=job_id,
                split=split,
                class_name=class_name,
                precision=scores["precision"],
                recall=scores["recall"],
                f1=scores["f1"],
                support=int(scores["support"]),
            )
            for class_name, scores in per_class.items()
        ]
    )


def training_job_mark_cancelled(
    *, claim: Claim, model_dir: str | Path | None, best_epoch: int | None, log_tail: str = ""
) -> bool:
    """Mark a running job cancelled after training stopped, keeping its best checkpoint so far."""
    updated = _owned(claim).update(
        status=Status.CANCELLED,
        phase=Phase.DONE,
        finished_at=timezone.now(),
        model_dir=str(model_dir) if model_dir else "",
        best_epoch=best_epoch,
        log_tail=log_tail,
    )
    if updated:
        logger.info("training job %s cancelled while running, best epoch %s kept", claim.job_id, best_epoch)
    return updated == 1


def training_job_fail(*, job_id: int, reason: str, log_tail: str = "", claim: Claim | None = None) -> bool:
    """Mark a queued or running job failed with a reason in words.

    With a claim, only that claim's running job is changed.
    """
    rows = TrainingJob.objects.filter(pk=job_id)
    rows = (
        rows.filter(status=Status.RUNNING, claim_token=claim.token)
        if claim
        else rows.filter(status__in=[Status.QUEUED, Status.RUNNING])
    )
    updated = rows.update(
        status=Status.FAILED, phase=Phase.DONE, finished_at=timezone.now(), failure_reason=reason, log_tail=log_tail
    )
    if updated:
        logger.warning("training job %s failed: %s", job_id, reason)
    return updated == 1


# Lost workers


def training_job_fail_lost(*, now: datetime | None = None) -> list[int]:
    """Mark failed every running job whose worker has sent no heartbeat for `TRAINING_JOB_STALE_AFTER` seconds."""
    now = now or timezone.now()
    stale_after = conf.stale_seconds()
    cutoff = now - timedelta(seconds=stale_after)
    stale = Q(status=Status.RUNNING) & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
    job_ids = list(TrainingJob.objects.filter(stale).values_list("pk", flat=True))
    if not job_ids:
        return []

    reason = (
        f"The training worker stopped sending heartbeats for more than {stale_after:.0f} s, "
        "so it probably crashed or was killed (for example for running out of memory). "
        "Launch the job again."
    )
    # The staleness filter is repeated in each UPDATE so that a job whose
    # heartbeat arrived after the SELECT stays running.
    failed = []
    for job_id in job_ids:
        if TrainingJob.objects.filter(stale, pk=job_id).update(
            status=Status.FAILED, phase=Phase.DONE, finished_at=now, failure_reason=reason
        ):
            logger.warning("training job %s marked failed: no heartbeat since %s", job_id, cutoff.isoformat())
            failed.append(job_id)
    return failed


def training_job_fail_orphans(*, worker: str) -> list[int]:
    """Mark failed the running jobs of a worker that just restarted, because its new process cannot be running them."""
    job_ids = list(TrainingJob.objects.filter(status=Status.RUNNING, worker=worker).values_list("pk", flat=True))
    reason = f"The training worker {worker} restarted while the job was running. Launch the job again."
    return [job_id for job_id in job_ids if training_job_fail(job_id=job_id, reason=reason)]


def training_job_requeue_waiting() -> int:
    """Send every queued job to the training queue again.

    Run when a training worker starts, because a broker restart can lose
    messages. A job whose first message still waits gets a second one, which
    the claim makes harmless.
    """
    job_ids = list(
        TrainingJob.objects.filter(status=Status.QUEUED).order_by("created_at", "pk").values_list("pk", flat=True)
    )
    for job_id in job_ids:
        training_job_enqueue(job_id)
    return len(job_ids)


# Promotion


def training_job_promote(*, job: TrainingJob) -> TrainingJob:
    """Register a succeeded job's model as a model version and make it the active one.

    Inference workers check the active version before each batch, so the
    next prediction uses this model without a restart. Raises
    InvalidTransition for a job that has not succeeded, and TrainingJobError
    when its model files are gone.
    """
    from classifier.services import model_version_activate, model_version_register

    job.refresh_from_db()
    if job.status != Status.SUCCEEDED:
        message = f"Training job {job.pk} has status {job.status}, but only a succeeded job can be promoted."
        if job.status == Status.CANCELLED and job.model_dir:
            message += (
                " Its kept checkpoint was never scored on the test set; download it and run "
                "python -m ml evaluate, or launch a new job."
            )
        raise InvalidTransition(message)
    model_dir = Path(job.model_dir)
    description_file = model_dir / "model.json"
    if not (model_dir / "model.safetensors").is_file() or not description_file.is_file():
        raise TrainingJobError(f"The model files of training job {job.pk} are missing from {model_dir}.")

    with transaction.atomic():
        version = model_version_register(
            model_dir=model_dir,
            version=_model_version_name(job, model_dir),
            metrics=promoted_metrics(job),
        )
        model_version_activate(version)
        TrainingJob.objects.filter(pk=job.pk).update(model_version=version, promoted_at=timezone.now())

    logger.info("training job %s promoted: model version %s is active", job.pk, version.version)
    job.refresh_from_db()
    return job


def promoted_metrics(job) -> dict[str, Any]:
    """Return a job's scores in the shape model.json's ``metrics`` has: ``val`` and ``test``, plus the job's id.

    The models API returns ``ModelVersion.metrics``, so there promoted and
    committed models share one shape.
    """
    return {
        "val": {"accuracy": job.val_accuracy, "macro_f1": job.val_macro_f1},
        "test": job_test_metrics(job, ClassMetric.objects.filter(job=job, split=ClassMetric.Split.TEST)),
        "training_job": job.pk,
    }


def job_test_metrics(job, class_metrics) -> dict[str, Any]:
    """Return a job's test scores as ``ml evaluate --record`` stores them in model.json."""
    rows = {row.class_name: row for row in class_metrics}
    per_class = {
        name: {"precision": row.precision, "recall": row.recall, "f1": row.f1, "support": row.support}
        for name in job.class_names or []
        if (row := rows.get(name)) is not None
    }
    return {
        "accuracy": job.test_accuracy,
        "macro_f1": job.test_macro_f1,
        "per_class": per_class,
        "confusion_matrix": job.test_confusion_matrix,
        "class_names": list(job.class_names or []),
        "n": sum(values["support"] for values in per_class.values()),
        "split_fingerprint": job.test_split_fingerprint,
    }


def _looks_like_weights(path: Path) -> bool:
    """Return whether a file starts as a weights file does, so the web process can reject junk without torch.

    torch.save writes a zip archive ("PK\\x03\\x04"), or a pickle (protocol byte 0x80) in
    its legacy format. A safetensors file starts with its header's length as a
    little-endian 64-bit number, then the JSON header ("{").
    """
    try:
        with path.open("rb") as file:
            head = file.read(9)
    except OSError:
        return False
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return True
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def training_job_delete(*, job: TrainingJob) -> str:
    """Delete a job's row and, once it has finished, its folder under the jobs root.

    Return a sentence for staff about the folder. The folder stays while the
    job may still be writing to it (queued or running), and when a model
    version was registered from it, because that version can be activated
    again and old predictions name it.
    """
    from classifier.models import ModelVersion

    folder = conf.jobs_root() / f"job-{job.pk}"
    job_id, finished = job.pk, job.status not in (Status.QUEUED, Status.RUNNING)
    job.delete()

    if not folder.is_dir():
        return f"Training job {job_id} deleted."
    if not finished:
        return f"Training job {job_id} deleted. Its folder {folder} stays, because the job had not finished."
    users = [
        version.version
        for version in ModelVersion.objects.all()
        if Path(version.model_dir).resolve().is_relative_to(folder.resolve())
    ]
    if users:
        return (
            f"Training job {job_id} deleted. Its folder {folder} stays, because model version "
            f"{', '.join(users)} uses it."
        )
    shutil.rmtree(folder)
    logger.info("training job %s deleted with its folder %s", job_id, folder)
    return f"Training job {job_id} deleted with its model folder."


def _model_version_name(job: TrainingJob, model_dir: Path) -> str:
    """Return the version string from model.json, made unique with the job id if another folder uses it."""
    from classifier.models import ModelVersion

    if job.model_version_id:
        return job.model_version.version
    try:
        described = json.loads((model_dir / "model.json").read_text()).get("model_version") or ""
    except (OSError, ValueError) as error:
        raise TrainingJobError(f"The model description of training job {job.pk} cannot be read: {error}.") from error

    name = str(described) or f"training-job-{job.pk}"
    if ModelVersion.objects.filter(version=name).exclude(model_dir=str(model_dir.resolve())).exists():
        name = f"{name}-job-{job.pk}"
    return name
