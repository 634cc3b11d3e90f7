"""The Celery application shared by the web process and the workers.

Queues: ``inference`` for predictions (short tasks, one model per process)
and ``training`` for training jobs (long tasks, run one at a time).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heritage_site.settings")

app = Celery("heritage_site")


def _broker_transport_options() -> dict:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        from heritage_site.filesystem_broker import install

        install()
        # kombu's filesystem transport needs its folders to exist. It polls,
        # so a short interval keeps the upload-to-prediction delay low.
        queue_dir = settings.BROKER_DIR / "queue"
        control_dir = settings.BROKER_DIR / "control"
        queue_dir.mkdir(parents=True, exist_ok=True)
        control_dir.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
            "polling_interval": 0.05,
        }
    return {"visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT}


app.conf.update(
    broker_url=settings.CELERY_BROKER_URL,
    broker_transport_options=_broker_transport_options(),
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue="inference",
    task_routes={
        "classifier.tasks.*": {"queue": "inference"},
        "training_jobs.tasks.*": {"queue": "training"},
    },
    # A message is acknowledged after its task finishes, and given back to the
    # broker when the worker process dies, so a lost worker loses no work.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Publishing must not hang an upload request when the broker is down: the
    # prediction stays pending in the database and the sweep queues it later.
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    beat_schedule={
        "queue-pending-predictions": {
            "task": "classifier.tasks.queue_pending_predictions",
            "schedule": settings.INFERENCE_SWEEP_INTERVAL,
        },
        # Marks failed the training jobs whose worker died. It runs on the
        # inference queue because the training worker may be the one that died.
        "fail-lost-training-jobs": {
            "task": "training_jobs.tasks.fail_lost_training_jobs",
            "schedule": 60.0,
            "options": {"queue": "inference"},
        },
    },
    beat_schedule_filename=str(settings.VAR_DIR / "celerybeat-schedule"),
)
app.autodiscover_tasks()


# Set CELERY_LIVENESS_FILE to have a worker touch that file while it lives;
# docker-compose.yml's training worker is checked this way.
_liveness = None


@worker_ready.connect
def _start_liveness_file(**kwargs) -> None:
    global _liveness
    path = os.environ.get("CELERY_LIVENESS_FILE")
    if path:
        from heritage_site.liveness import LivenessFile

        _liveness = LivenessFile(path).start()


@worker_shutdown.connect
def _stop_liveness_file(**kwargs) -> None:
    if _liveness is not None:
        _liveness.stop()
