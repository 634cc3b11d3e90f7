"""Celery tasks of the training queue. They take ids and hand the work to runner and services."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import celeryd_after_setup

from training_jobs import conf, services

logger = logging.getLogger(__name__)

TRAINING_QUEUE = "training"


# The message is acknowledged when the task starts (acks_late=False): a job may
# run for hours, longer than any broker visibility timeout, and a late
# acknowledgement would get the message delivered again mid-run. A worker that
# dies mid-job is found by its stale heartbeat instead.
# The Celery limits apply only under pools that enforce them (prefork); the
# training worker runs --pool=solo, where the runner checks
# TRAINING_JOB_TIME_LIMIT itself between batches.
@shared_task(
    acks_late=False,
    ignore_result=True,
    soft_time_limit=conf.time_limit_seconds() + 300,
    time_limit=conf.time_limit_seconds() + 600,
)
def run_training_job(job_id: int) -> str:
    from training_jobs.runner import run_job

    return run_job(job_id, worker=run_training_job.request.hostname or "unknown")


@shared_task(ignore_result=True)
def fail_lost_training_jobs() -> list[int]:
    return services.training_job_fail_lost()


@celeryd_after_setup.connect
def recover_training_jobs(sender: str, instance, **kwargs) -> None:
    """On a training worker's start, fail the jobs its previous process left running and resend queued ones."""
    queues = instance.app.amqp.queues.consume_from or {}
    if TRAINING_QUEUE not in queues:
        return

    orphans = services.training_job_fail_orphans(worker=sender)
    lost = services.training_job_fail_lost()
    resent = services.training_job_requeue_waiting()
    logger.info(
        "training worker %s started: %d orphaned and %d lost jobs marked failed, %d queued jobs resent",
        sender,
        len(orphans),
        len(lost),
        resent,
    )
