"""Celery tasks of the ``inference`` queue.

Tasks take ids and call services. This module must stay importable without
torch, because the web process imports it to send tasks. The model code is
imported inside the task bodies, which run only in workers.
"""

from __future__ import annotations

import logging
import os
import time

from celery import shared_task, signals
from django.conf import settings
from django.utils import timezone

from classifier import services

logger = logging.getLogger(__name__)

# Set in the worker's main process before the pool forks, read by the children.
_worker_state = {"consumes_inference": False, "started_at": None}


@shared_task(
    name="classifier.tasks.predict",
    bind=True,
    soft_time_limit=settings.INFERENCE_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.INFERENCE_TASK_TIME_LIMIT,
)
def predict(self, prediction_id: int) -> None:
    """Run the active model on this prediction and on others waiting, as one batch."""
    from classifier import inference

    worker = f"{self.request.hostname or 'local'} pid {os.getpid()}"
    inference.run_batch(prediction_id, worker=worker)


@shared_task(name="classifier.tasks.queue_pending_predictions")
def queue_pending_predictions() -> int:
    """Send tasks for pending predictions that nothing is working on (run periodically by beat)."""
    return services.predictions_queue_pending()


@signals.celeryd_after_setup.connect
def _remember_queues(sender, instance, **kwargs) -> None:
    queues = set(instance.app.amqp.queues.consume_from or instance.app.amqp.queues)
    _worker_state["consumes_inference"] = "inference" in queues
    _worker_state["started_at"] = timezone.now()


@signals.worker_process_init.connect
def _load_model_after_fork(**kwargs) -> None:
    # Each pool process loads the model once, after the fork: torch state
    # does not survive a fork safely, and the first upload then waits for
    # inference only, not for loading.
    if not _worker_state["consumes_inference"]:
        return

    from classifier import inference

    started = time.monotonic()
    try:
        inference.get_predictor()
    except inference.NoActiveModel as error:
        logger.warning("no model preloaded: %s; uploads stay pending until one is registered", error)
        return
    except Exception:
        logger.exception("model preload failed; the first batch will try again")
        return
    logger.info("model loaded in pool process %d in %.0f ms", os.getpid(), (time.monotonic() - started) * 1000)


@signals.worker_ready.connect
def _recover_pending_predictions(sender, **kwargs) -> None:
    if not _worker_state["consumes_inference"]:
        return

    started_at = _worker_state["started_at"] or timezone.now()
    services.predictions_release_worker(f"{sender.hostname} pid ", claimed_before=started_at)
    services.predictions_queue_pending()
