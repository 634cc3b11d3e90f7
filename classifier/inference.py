"""Worker-side inference: the per-process model and the batch loop.

Imports torch through ``ml.inference``; only Celery workers import this module.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.storage import default_storage

from classifier import selectors, services
from classifier.models import MODEL_LOAD_FAILURE, ModelVersion, Prediction
from ml.errors import ImageDecodeError, MLError
from ml.images import open_image
from ml.inference import Predictor

logger = logging.getLogger(__name__)


@dataclass
class _LoadedModel:
    version: ModelVersion
    predictor: Predictor


_loaded: _LoadedModel | None = None


class NoActiveModel(Exception):
    """No model version is active and the default model is missing."""


def get_predictor() -> _LoadedModel:
    """Return the active model, loading it when this process has none or the active version changed."""
    global _loaded

    active_id = selectors.model_version_active_id()
    if active_id is None:
        services.model_version_ensure_default()
        active_id = selectors.model_version_active_id()
    if active_id is None:
        raise NoActiveModel("no model version is active and the default model is missing")

    if _loaded is not None and _loaded.version.pk == active_id:
        return _loaded

    version = ModelVersion.objects.get(pk=active_id)
    if settings.INFERENCE_TORCH_THREADS:
        torch.set_num_threads(settings.INFERENCE_TORCH_THREADS)
    started = time.monotonic()
    model_dir = services.model_version_dir(version)
    predictor = Predictor(model_dir, device=settings.INFERENCE_DEVICE)
    _loaded = _LoadedModel(version=version, predictor=predictor)

    logger.info(
        "model version %s loaded from %s on %s in %.0f ms",
        version.version,
        model_dir,
        predictor.device,
        (time.monotonic() - started) * 1000,
    )
    return _loaded


def _read_image(prediction: Prediction, draft_size: int):
    # Read the original, not the re-encoded display copy. At the 64 px that
    # the model reduces photos to, one more JPEG generation changes its
    # output, and `python -m ml predict` on the same file must agree with the
    # site. A large JPEG stays cheap because it is decoded at a reduced scale.
    with default_storage.open(prediction.upload.stored_image.original.name, "rb") as stored:
        return open_image(stored.read(), draft_size=draft_size)


def run_batch(first_id: int, *, worker: str) -> int:
    """Claim a batch starting with ``first_id``, predict it and store the results.

    Returns the number of predictions completed by this call.
    """
    try:
        loaded = get_predictor()
    except NoActiveModel:
        # Not a failure of this upload: it stays pending, and the periodic
        # sweep sends it again once a model is registered.
        logger.warning("prediction %s left pending: no model version is active", first_id)
        return 0
    except MLError as error:
        loaded, load_error = None, error

    token, claimed = services.predictions_claim(first_id, limit=settings.INFERENCE_BATCH_SIZE, worker=worker)
    if not claimed:
        logger.debug("prediction %s already claimed or finished", first_id)
        return 0

    if loaded is None:
        for prediction in claimed:
            services.prediction_fail(prediction, token=token, error=f"{MODEL_LOAD_FAILURE}: {load_error}")
        return 0

    try:
        return _predict_claimed(claimed, token, loaded)
    except SoftTimeLimitExceeded:
        error = f"timed out after {settings.INFERENCE_TASK_SOFT_TIME_LIMIT} s"
    except Exception:
        logger.exception("batch %s failed unexpectedly", token[:8])
        error = "inference failed unexpectedly; the worker log has the details"

    # Only rows still pending under this claim change, so results stored
    # before the failure are kept.
    for prediction in claimed:
        services.prediction_fail(prediction, token=token, error=error, model_version=loaded.version)
    return 0


def _predict_claimed(claimed: list[Prediction], token: str, loaded: _LoadedModel) -> int:
    read_started = time.monotonic()
    images, readable = [], []
    for prediction in claimed:
        try:
            images.append(_read_image(prediction, loaded.predictor.draft_size))
            readable.append(prediction)
        except (OSError, ImageDecodeError) as error:
            services.prediction_fail(
                prediction, token=token, error=f"stored image could not be read: {error}", model_version=loaded.version
            )
    if not readable:
        return 0

    started = time.monotonic()
    read_ms = (started - read_started) * 1000
    try:
        results = loaded.predictor.predict(images)
    except MLError as error:
        for prediction in readable:
            services.prediction_fail(prediction, token=token, error=str(error), model_version=loaded.version)
        return 0
    model_ms = (time.monotonic() - started) * 1000
    per_image_ms = model_ms / len(readable)

    store_started = time.monotonic()
    completed = 0
    for prediction, probabilities in zip(readable, results, strict=True):
        if services.prediction_complete(
            prediction,
            token=token,
            probabilities=probabilities,
            model_version=loaded.version,
            inference_ms=per_image_ms,
        ):
            completed += 1

    logger.info(
        "batch %s of %d predicted with %s: read %.0f ms, model %.0f ms, store %.0f ms",
        token[:8],
        len(readable),
        loaded.version.version,
        read_ms,
        model_ms,
        (time.monotonic() - store_started) * 1000,
    )
    return completed
