"""Writes and state changes for uploads, predictions and model versions."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import KombuError

import ml
from classifier import selectors
from classifier.imaging import EXTENSIONS, encode_jpeg_copy, inspect_image, reject_if_too_large
from classifier.models import ModelVersion, Prediction, StoredImage, Upload

logger = logging.getLogger(__name__)


# Model versions


def read_model_description(model_dir: Path) -> dict:
    """Return a model folder's model.json, or raise ValueError naming the file when it is missing or not an object."""
    # Plain JSON on purpose: ml.checkpoints may import torch, and the web
    # process never does.
    description_path = model_dir / "model.json"
    try:
        description = json.loads(description_path.read_text())
    except FileNotFoundError:
        raise ValueError(f"model description not found: {description_path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"model description {description_path} is not valid JSON: {error}") from None
    if not isinstance(description, dict):
        raise ValueError(f"model description {description_path} is not a JSON object: write it with python -m ml")
    return description


class ModelVersionUnusable(Exception):
    """Error for a model version whose folder cannot serve predictions; the message gives the reason."""


def model_dir_problem(model_dir: str | Path) -> str | None:
    """Return why a folder cannot serve predictions, or None when its model.json and weights file are in place.

    Reads only model.json and checks that the weights file exists, so that the
    web process can check a folder without importing torch. The worker still
    checks the weights when it loads them.
    """
    model_dir = Path(model_dir)
    try:
        description = read_model_description(model_dir)
    except ValueError as error:
        return str(error)
    class_names = description.get("class_names")
    if not isinstance(class_names, list) or len(class_names) < 2 or not all(isinstance(n, str) for n in class_names):
        return f"{model_dir / 'model.json'} has no class_names list of two or more names"
    weights = model_dir / str(description.get("weights_file") or "model.safetensors")
    if not weights.is_file():
        return f"weights file not found: {weights}"
    return None


class InvalidModelFolder(Exception):
    """Error for a folder that cannot be registered as a model version, naming the form field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def model_folder_check(*, model_dir: str, version: str = "") -> tuple[Path, dict, str]:
    """Check a folder that staff want to register; return it resolved, its model.json and the version name.

    The name is ``version``, else the ``model_version`` of its model.json,
    else the folder's name. Raises InvalidModelFolder for a relative path, a
    missing folder, a folder registered already, a folder that cannot serve
    predictions, or a name in use.
    """
    folder = Path(model_dir.strip()).expanduser()
    if not folder.is_absolute():
        raise InvalidModelFolder(
            "model_dir", f"Give the folder's absolute path, such as /srv/models/{folder.name or 'name'}."
        )
    folder = folder.resolve()
    if not folder.is_dir():
        raise InvalidModelFolder("model_dir", f"Folder not found on the server: {folder}.")
    registered = ModelVersion.objects.filter(model_dir=str(folder)).first()
    if registered is not None:
        raise InvalidModelFolder(
            "model_dir", f"This folder is registered already, as model version {registered.version}."
        )
    problem = model_dir_problem(folder)
    if problem:
        raise InvalidModelFolder("model_dir", f"This folder cannot serve predictions: {problem}.")
    description = read_model_description(folder)
    version = version or description.get("model_version") or folder.name
    if ModelVersion.objects.filter(version=version).exists():
        raise InvalidModelFolder("version", f"Model version {version} is registered already. Give another name.")
    return folder, description, version


def model_version_register(
    *, model_dir: str | Path, version: str | None = None, metrics: dict | None = None, is_default: bool = False
) -> ModelVersion:
    """Record a model directory as a version that can be activated.

    The version string and class names come from its ``model.json`` unless
    ``version`` is given. Registering the same version again returns the
    existing row.
    """
    model_dir = Path(model_dir).resolve()
    return _model_version_register(
        model_dir, read_model_description(model_dir), version=version, metrics=metrics, is_default=is_default
    )


def _model_version_register(
    model_dir: Path, description: dict, *, version: str | None, metrics: dict | None, is_default: bool
) -> ModelVersion:
    version = version or description.get("model_version") or model_dir.name

    defaults = {
        "model_dir": str(model_dir),
        "class_names": description.get("class_names", []),
        "metrics": metrics if metrics is not None else description.get("metrics", {}),
        "is_default": is_default,
    }
    try:
        with transaction.atomic():
            model_version, created = ModelVersion.objects.get_or_create(version=version, defaults=defaults)
    except IntegrityError:
        # A concurrent request registered the same version first.
        return ModelVersion.objects.get(version=version)

    if created:
        logger.info("model version %s registered from %s", version, model_dir)
    return model_version


@transaction.atomic
def model_version_activate(version: ModelVersion) -> ModelVersion:
    """Make ``version`` the model that serves new predictions.

    Inference workers compare the active version id before every batch, so
    they switch without a restart. Raises ModelVersionUnusable, and changes
    nothing, when the version's folder lacks its model.json or weights file.
    """
    problem = model_dir_problem(model_version_dir(version))
    if problem:
        raise ModelVersionUnusable(f"Model version {version.version} cannot serve predictions: {problem}.")
    # Lock the rows so that two concurrent activations end with one winner.
    list(ModelVersion.objects.select_for_update().filter(Q(is_active=True) | Q(pk=version.pk)))
    ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.is_active = True

    logger.info("model version %s activated", version.version)
    return version


def default_model_dir() -> Path:
    return Path(settings.DEFAULT_MODEL_DIR) if settings.DEFAULT_MODEL_DIR else ml.DEFAULT_MODEL_DIR


def model_version_dir(version: ModelVersion) -> Path:
    """Return the folder to load ``version`` from.

    The default model is found through the installed code rather than the
    stored path, so the row stays valid when the checkout moves (for example
    into a container image).
    """
    return default_model_dir() if version.is_default else Path(version.model_dir)


def model_version_ensure_default() -> ModelVersion | None:
    """Register the committed default model, and activate it when no version is active.

    Returns the active version, or None when no model is registered and the
    default model directory has no ``model.json`` yet.
    """
    model_dir = default_model_dir().resolve()
    if (model_dir / "model.json").is_file():
        description = read_model_description(model_dir)
        default = _model_version_register(model_dir, description, version=None, metrics=None, is_default=True)
        # Scores added to model.json later (python -m ml evaluate --record)
        # reach a version registered before them.
        metrics = description.get("metrics", {})
        if default.metrics != metrics:
            ModelVersion.objects.filter(pk=default.pk).update(metrics=metrics)
        if not ModelVersion.objects.filter(is_active=True).exists():
            try:
                model_version_activate(default)
            except ModelVersionUnusable as error:
                logger.warning("default model not activated: %s", error)
    else:
        logger.warning("default model not found at %s", model_dir)

    return ModelVersion.objects.filter(is_active=True).first()


# Uploads


def _storage_names(sha256: str, image_format: str) -> dict[str, str]:
    prefix = f"{sha256[:2]}/{sha256}"
    return {
        "original": f"originals/{prefix}.{EXTENSIONS.get(image_format, 'bin')}",
        "display": f"display/{prefix}.jpg",
        "thumbnail": f"thumbnails/{prefix}.jpg",
    }


def _stored_image_create(sha256: str, data: bytes, inspected) -> StoredImage:
    names = _storage_names(sha256, inspected.format)
    contents = {
        "original": data,
        "display": encode_jpeg_copy(inspected.rgb, settings.IMAGE_DISPLAY_MAX_SIDE, quality=88),
        "thumbnail": encode_jpeg_copy(inspected.rgb, settings.IMAGE_THUMBNAIL_MAX_SIDE, quality=80),
    }
    saved = {field: default_storage.save(names[field], ContentFile(contents[field])) for field in names}

    try:
        with transaction.atomic():
            return StoredImage.objects.create(
                sha256=sha256,
                format=inspected.format,
                width=inspected.width,
                height=inspected.height,
                byte_size=len(data),
                **saved,
            )
    except IntegrityError:
        # Another request stored the same content first: keep its files.
        for name in saved.values():
            default_storage.delete(name)
        return StoredImage.objects.get(sha256=sha256)


def _stored_image_for(name: str, data: bytes) -> StoredImage:
    inspected = inspect_image(
        name,
        data,
        max_bytes=settings.UPLOAD_MAX_BYTES,
        max_pixels=settings.IMAGE_MAX_PIXELS,
        allowed_formats=settings.IMAGE_ALLOWED_FORMATS,
    )
    sha256 = hashlib.sha256(data).hexdigest()

    existing = StoredImage.objects.filter(sha256=sha256).first()
    if existing is not None:
        logger.info("upload %r reuses stored image %s", name, sha256[:12])
        return existing
    return _stored_image_create(sha256, data, inspected)


def upload_create(*, name: str, data: bytes, owner=None, hidden: bool = False, imported: bool = False) -> Upload:
    """Validate one uploaded file, store it once per content, and queue its prediction.

    ``hidden`` keeps it out of the public gallery from the start, and
    ``imported`` marks a file that import_photos read from the server's disk.
    Raises ``ImageRejected`` with a code and a message for the visitor.
    """
    for attempt in range(2):
        stored_image = _stored_image_for(name, data)
        try:
            with transaction.atomic():
                upload = Upload.objects.create(
                    stored_image=stored_image,
                    owner=owner if owner is not None and owner.is_authenticated else None,
                    original_name=name[:255],
                    is_hidden=hidden,
                    imported=imported,
                )
                prediction_request(upload)
            break
        except IntegrityError:
            # upload_delete removed the reused stored image, with its last
            # upload, in between: store the content again, once.
            if attempt:
                raise
            logger.warning("stored image for upload %r was deleted meanwhile, so it is stored again", name)

    logger.info("upload %s created from %r (%s)", upload.pk, name, stored_image.format)
    return upload


def upload_create_from_file(*, uploaded_file, owner=None) -> Upload:
    """Like ``upload_create`` for a Django ``UploadedFile``; checks the size before reading it."""
    name = uploaded_file.name or "unnamed file"
    reject_if_too_large(name, uploaded_file.size, settings.UPLOAD_MAX_BYTES)
    uploaded_file.seek(0)
    return upload_create(name=name, data=uploaded_file.read(), owner=owner)


def upload_import_file(*, path: Path, name: str, owner=None, hidden: bool = False) -> tuple[Upload, bool]:
    """Upload a file from the server's disk under ``name``, unless it was uploaded before.

    Returns the upload and whether it is new. A file with the same bytes and
    name counts as uploaded before when ``owner`` uploaded it (by an import or
    through the site) or, without an owner, when an earlier import without an
    owner did; anonymous visitors' uploads never count. Such a file returns
    the earlier upload and False, so an interrupted import can be run again.
    With ``hidden``, those earlier uploads are hidden too. Raises
    ``ImageRejected`` as ``upload_create`` does, and for a file over the byte
    limit before reading it.
    """
    reject_if_too_large(name, path.stat().st_size, settings.UPLOAD_MAX_BYTES)
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    previous = Upload.objects.filter(stored_image__sha256=sha256, original_name=name[:255])
    if owner is not None:
        previous = previous.filter(owner=owner)
    else:
        previous = previous.filter(owner__isnull=True, imported=True)
    previous = previous.order_by("pk")
    earliest = previous.first()
    if earliest is not None:
        if hidden:
            previous.update(is_hidden=True)
        return earliest, False
    return upload_create(name=name, data=data, owner=owner, hidden=hidden, imported=True), True


def upload_delete(upload: Upload) -> None:
    """Delete an upload with its predictions, and its files once no other upload shares them.

    The same content uploaded twice is stored once, so the files go only
    with the last upload that uses them, after the deletion commits.
    """
    with transaction.atomic():
        stored = StoredImage.objects.select_for_update().get(pk=upload.stored_image_id)
        Upload.objects.filter(pk=upload.pk).delete()
        shared = stored.uploads.exists()
        if not shared:
            names = [stored.original.name, stored.display.name, stored.thumbnail.name]
            stored.delete()
            transaction.on_commit(lambda: _storage_delete(names))
    logger.info("upload %s deleted%s", upload.pk, "" if shared else f", with stored image {stored.sha256[:12]}")


def _storage_delete(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError as error:
            # The rows are gone already, so a file left behind only costs space.
            logger.warning("could not delete stored file %s: %s", name, error)


class InvalidLabel(ValueError):
    """A label that is not one of the active model's classes."""


def upload_set_verified_label(upload: Upload, *, label: str, user) -> Upload:
    """Record the element a staff member confirmed for ``upload``; an empty label clears it.

    Raises InvalidLabel unless ``label`` is one of the active model's classes.
    """
    label = label.strip()
    names = selectors.class_names()
    if label and label not in names:
        logger.info("label %r for upload %s rejected: not a class of the active model", label, upload.pk)
        raise InvalidLabel(f"label {label!r} is not a class of the active model. Use one of: {', '.join(names)}.")

    verified_at = timezone.now() if label else None
    verified_by = user if label else None
    Upload.objects.filter(pk=upload.pk).update(verified_label=label, verified_by=verified_by, verified_at=verified_at)
    upload.verified_label, upload.verified_by, upload.verified_at = label, verified_by, verified_at
    logger.info("upload %s verified label set to %r by user %s", upload.pk, label, getattr(user, "pk", None))
    return upload


def upload_set_hidden(upload: Upload, *, hidden: bool) -> Upload:
    Upload.objects.filter(pk=upload.pk).update(is_hidden=hidden)
    upload.is_hidden = hidden
    logger.info("upload %s %s", upload.pk, "hidden" if hidden else "shown")
    return upload


# Predictions


def prediction_request(upload: Upload) -> Prediction:
    """Add a pending prediction for ``upload`` and queue it once the transaction commits.

    Used for new uploads, for retrying a failed prediction and for re-running
    an upload with the active model.
    """
    with transaction.atomic():
        prediction = Prediction.objects.create(upload=upload)
        Upload.objects.filter(pk=upload.pk).update(latest_prediction=prediction)
        upload.latest_prediction = prediction
        transaction.on_commit(lambda: prediction_enqueue(prediction.pk))
    return prediction


def prediction_enqueue(prediction_id: int) -> bool:
    """Send the inference task; returns False when the broker cannot be reached.

    A prediction that is not sent stays pending in the database, and the
    periodic sweep (``predictions_queue_pending``) sends it later.
    """
    from classifier import tasks

    try:
        tasks.predict.delay(prediction_id)
    except (KombuError, OSError) as error:
        # kombu wraps the transport's connection errors in OperationalError,
        # a KombuError, once its publish retries are used up.
        logger.warning("prediction %s not queued, broker unavailable: %s", prediction_id, error)
        return False

    Prediction.objects.filter(pk=prediction_id).update(queued_at=timezone.now())
    return True


def _claim_expiry() -> timezone.datetime:
    return timezone.now() - timedelta(seconds=settings.INFERENCE_CLAIM_TIMEOUT)


def _claimable() -> Q:
    return Q(status=Prediction.Status.PENDING) & (Q(claimed_at__isnull=True) | Q(claimed_at__lt=_claim_expiry()))


def predictions_claim(first_id: int, *, limit: int, worker: str) -> tuple[str, list[Prediction]]:
    """Claim ``first_id`` and up to ``limit - 1`` more waiting predictions for one batch.

    The claim is one conditional UPDATE: only rows still pending and
    unclaimed (or whose claim expired) change, so two workers never get the
    same row, and a redelivered task message finds nothing to do.
    """
    others = list(
        Prediction.objects.filter(_claimable())
        .exclude(pk=first_id)
        .order_by("created", "id")
        .values_list("pk", flat=True)[: max(0, limit - 1)]
    )
    token = uuid.uuid4().hex

    Prediction.objects.filter(_claimable(), pk__in=[first_id, *others]).update(
        claim_token=token, claimed_by=worker[:200], claimed_at=timezone.now(), attempts=F("attempts") + 1
    )
    claimed = list(
        Prediction.objects.filter(claim_token=token).select_related("upload__stored_image").order_by("created", "id")
    )
    return token, claimed


def prediction_complete(
    prediction: Prediction,
    *,
    token: str,
    probabilities: dict[str, float],
    model_version: ModelVersion,
    inference_ms: float,
) -> bool:
    """Store a result; returns False when the claim was lost (another worker took over)."""
    label = max(probabilities, key=probabilities.get)
    changed = Prediction.objects.filter(pk=prediction.pk, claim_token=token, status=Prediction.Status.PENDING).update(
        status=Prediction.Status.DONE,
        label=label,
        probabilities=probabilities,
        confidence=probabilities[label],
        model_version=model_version,
        error="",
        finished_at=timezone.now(),
        inference_ms=inference_ms,
    )
    if changed != 1:
        logger.warning("prediction %s result dropped: claim %s no longer held", prediction.pk, token[:8])
        return False
    return True


def prediction_fail(
    prediction: Prediction, *, token: str, error: str, model_version: ModelVersion | None = None
) -> bool:
    """Mark a claimed prediction failed with a reason that staff can read."""
    changed = Prediction.objects.filter(pk=prediction.pk, claim_token=token, status=Prediction.Status.PENDING).update(
        status=Prediction.Status.FAILED,
        error=error[:2000],
        model_version=model_version,
        finished_at=timezone.now(),
    )
    if changed == 1:
        logger.warning("prediction %s failed: %s", prediction.pk, error)
    return changed == 1


def predictions_release_worker(worker_prefix: str, *, claimed_before) -> int:
    """Release claims held by a previous run of a worker with the same node name.

    Celery refuses two live workers with one node name, so a claim from
    before this worker started belongs to a process that is gone.
    """
    released = Prediction.objects.filter(
        status=Prediction.Status.PENDING, claimed_by__startswith=worker_prefix, claimed_at__lt=claimed_before
    ).update(claim_token="", claimed_by="", claimed_at=None, queued_at=None)
    if released:
        logger.info("released %d predictions claimed by a previous run of %s", released, worker_prefix)
    return released


def predictions_queue_pending() -> int:
    """Send a task for each pending prediction without a live claim or a recently sent message.

    Covers uploads made while the broker was down, claims that expired
    because their worker died, and messages that a broker lost. A prediction
    is sent again at most once per claim timeout, so a long backlog does not
    fill the queue with copies.
    """
    not_recently_sent = Q(queued_at__isnull=True) | Q(queued_at__lt=_claim_expiry())
    pending_ids = list(
        Prediction.objects.filter(_claimable(), not_recently_sent)
        .order_by("created", "id")
        .values_list("pk", flat=True)
    )
    sent = sum(1 for prediction_id in pending_ids if prediction_enqueue(prediction_id))
    if pending_ids:
        logger.info("queued %d of %d pending predictions", sent, len(pending_ids))
    return sent


# Checked photos as a training dataset


class CheckedExportError(ValueError):
    """A checked-photo export that cannot start, with the reason for the user."""


def checked_photos_export(
    folder: str | Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    include_hidden: bool = False,
    base_dataset: str | Path | None = None,
) -> dict:
    """Write the photos staff have checked as a dataset folder with train/<class>/ and test/<class>/.

    Each photo's metadata-free display copy is written as ``<upload id>.jpg``.
    Every class of the active model gets both folders, empty when no photo
    of it was checked. Every class is split on its own with a seeded
    shuffle, and a class with two or more photos puts at least one in each
    split. Uploads of the same
    bytes count once, and bytes checked as two different classes are left
    out. The folder is filled under a temporary name and renamed at the end,
    so a failed export leaves nothing half written.

    With ``base_dataset``, a folder with the same layout, its images are
    linked in beside the checked photos as ``base-<name>`` (symbolic links,
    so nothing is copied), and a job trains and tests on both.

    Returns ``{"folder", "counts": {split: {class: n}}, "base_counts", "skipped": [message, ...]}``,
    where ``counts`` are the checked photos and ``base_counts`` the linked images.
    Raises CheckedExportError when the folder is not empty, the fraction is
    not above 0 and at most 0.9, or no photo qualifies.
    """
    folder = Path(folder).expanduser().resolve()
    if not 0 < test_fraction <= 0.9:
        raise CheckedExportError(f"test fraction must be above 0 and at most 0.9, not {test_fraction}.")
    if folder.exists() and not folder.is_dir():
        raise CheckedExportError(f"{folder} is a file. Name a new or empty folder.")
    if folder.is_dir() and any(folder.iterdir()):
        raise CheckedExportError(f"{folder} is not empty. Name a new or empty folder.")
    base = Path(base_dataset).expanduser().resolve() if base_dataset else None
    if base is not None and not base.is_dir():
        raise CheckedExportError(f"base dataset not found: {base}")
    if base is not None and not all((base / split).is_dir() for split in ("train", "test")):
        raise CheckedExportError(f"base dataset {base} needs train/<class>/ and test/<class>/ folders.")

    uploads = Upload.objects.checked(True).select_related("stored_image").order_by("pk")
    if not include_hidden:
        uploads = uploads.filter(is_hidden=False)
    by_content: dict[int, list[Upload]] = {}
    for upload in uploads:
        by_content.setdefault(upload.stored_image_id, []).append(upload)

    skipped: list[str] = []
    # Every class of the active model gets its folders, so a class without
    # checked photos shows up as missing when the dataset is registered.
    by_class: dict[str, list[Upload]] = {name: [] for name in selectors.class_names()}
    for copies in by_content.values():
        labels = sorted({upload.verified_label for upload in copies})
        if len(labels) > 1:
            ids = ", ".join(str(upload.pk) for upload in copies)
            skipped.append(f"uploads {ids} have the same bytes but different checked labels ({', '.join(labels)})")
            continue
        by_class.setdefault(labels[0], []).append(copies[0])
    if not any(by_class.values()):
        raise CheckedExportError(
            "no checked photo to export. Check photos on their pages first. Hidden photos count only when included."
        )

    rng = random.Random(seed)
    splits: dict[str, dict[str, list[Upload]]] = {"train": {}, "test": {}}
    for label in sorted(by_class):
        photos = by_class[label]
        rng.shuffle(photos)
        test_count = 0 if len(photos) < 2 else min(max(round(len(photos) * test_fraction), 1), len(photos) - 1)
        splits["test"][label] = photos[:test_count]
        splits["train"][label] = photos[test_count:]

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for split, classes in splits.items():
            for label, photos in classes.items():
                class_folder = staging / split / label
                class_folder.mkdir(parents=True)
                for upload in list(photos):
                    try:
                        with default_storage.open(upload.stored_image.display.name, "rb") as source:
                            (class_folder / f"{upload.pk}.jpg").write_bytes(source.read())
                    except FileNotFoundError:
                        logger.warning(
                            "checked upload %s left out of the export: its display file is missing", upload.pk
                        )
                        skipped.append(
                            f"upload {upload.pk}: its display file {upload.stored_image.display.name} is missing"
                        )
                        photos.remove(upload)
        base_counts = _link_base_dataset(base, staging) if base is not None else {}
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    counts = {split: {label: len(photos) for label, photos in classes.items()} for split, classes in splits.items()}
    exported = sum(sum(split.values()) for split in counts.values())
    if base is None:
        logger.info("exported %d checked photos to %s", exported, folder)
    else:
        linked = sum(sum(split.values()) for split in base_counts.values())
        logger.info("exported %d checked photos to %s, with %d images linked from %s", exported, folder, linked, base)
    return {"folder": folder, "counts": counts, "base_counts": base_counts, "skipped": skipped}


def _link_base_dataset(base: Path, target: Path) -> dict[str, dict[str, int]]:
    """Link every file of base/<split>/<class>/ into target/<split>/<class>/ as base-<name>, and count them."""
    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "test"):
        counts[split] = {}
        for class_folder in sorted((base / split).iterdir()):
            if not class_folder.is_dir() or class_folder.name.startswith("."):
                continue
            linked = target / split / class_folder.name
            linked.mkdir(parents=True, exist_ok=True)
            files = [path for path in class_folder.iterdir() if path.is_file() and not path.name.startswith(".")]
            for path in files:
                (linked / f"base-{path.name}").symlink_to(path.resolve())
            counts[split][class_folder.name] = len(files)
    return counts
