"""Run one claimed training job inside a training worker.

This is the only module of the app that imports torch (through ml.training
and ml.evaluation), and it does so inside `run_job`, so importing it costs
nothing in the web process.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from training_jobs import conf, services
from training_jobs.models import TrainingJob

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 200


def run_job(job_id: int, *, worker: str) -> str:
    """Claim, train, evaluate and store one job. Returns the job's final status, or "skipped"."""
    claim = services.training_job_claim(job_id=job_id, worker=worker)
    if claim is None:
        return "skipped"

    log_tail = LogTail()
    heartbeat = Heartbeat(claim)
    log_tail.attach()
    heartbeat.start()
    started = time.monotonic()
    try:
        return _train_and_evaluate(claim, log_tail)
    except Exception as error:
        logger.exception("training job %s failed", job_id)
        services.training_job_fail(job_id=job_id, claim=claim, reason=describe_failure(error), log_tail=log_tail.text())
        return TrainingJob.Status.FAILED
    finally:
        heartbeat.stop()
        log_tail.detach()
        logger.info("training job %s left the worker after %.1f s", job_id, time.monotonic() - started)


def build_config(job: TrainingJob):
    """Build the ml.config.TrainConfig of a job row."""
    from ml.config import TrainConfig

    return TrainConfig(
        data_dir=job.dataset.path,
        out_dir=str(conf.jobs_root() / f"job-{job.pk}"),
        backbone=job.backbone,
        weights_file=job.weights_file or None,
        mode=job.mode,
        epochs=job.epochs,
        batch_size=job.batch_size,
        learning_rate=job.learning_rate,
        image_size=job.image_size,
        seed=job.seed,
        split_seed=job.split_seed,
        ema_decay=job.ema_decay,
        patience=job.patience,
        num_workers=conf.loader_workers(),
        device=conf.device(),
    )


def _train_and_evaluate(claim: services.Claim, log_tail: LogTail) -> str:
    from ml.evaluation import evaluate
    from ml.training import fit

    job = TrainingJob.objects.select_related("dataset").get(pk=claim.job_id)
    config = build_config(job)
    config.validate()
    reporter = ProgressReporter(claim)

    logger.info(
        "training job %s starts: %s, %s, epochs %d, on %s", job.pk, job.backbone, job.mode, job.epochs, job.dataset.path
    )
    result = fit(config, on_progress=reporter.on_progress, should_stop=reporter.should_stop)

    # fit returns early once should_stop returns True. A cancel request that
    # arrived after the last batch is honoured here, before the evaluation.
    stop_reason = reporter.stop_reason or services.training_job_should_stop(claim=claim)
    if result.cancelled or stop_reason:
        return _finish_stopped(claim, stop_reason, result, log_tail)

    services.training_job_set_phase(claim=claim, phase=TrainingJob.Phase.EVALUATING)
    test = evaluate(
        result.model_dir,
        config.data_dir,
        split="test",
        batch_size=config.batch_size,
        tta=config.tta,
        device=config.device,
    )
    fit_summary = {
        "model_dir": result.model_dir,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "val_metrics": result.val_metrics,
    }
    stored = services.training_job_succeed(claim=claim, fit=fit_summary, test=test, log_tail=log_tail.text())
    return TrainingJob.Status.SUCCEEDED if stored else "lost"


def _finish_stopped(claim: services.Claim, stop_reason: str, result: Any, log_tail: LogTail) -> str:
    if stop_reason == "lost":
        logger.warning("training job %s stopped: its claim was lost, so nothing is stored", claim.job_id)
        return "lost"

    if stop_reason == "time_limit":
        limit = conf.time_limit_seconds()
        services.training_job_fail(
            job_id=claim.job_id,
            claim=claim,
            reason=(
                f"Timed out: the job ran longer than the limit of {limit} s (TRAINING_JOB_TIME_LIMIT). "
                "Raise the limit or train fewer epochs."
            ),
            log_tail=log_tail.text(),
        )
        return TrainingJob.Status.FAILED

    services.training_job_mark_cancelled(
        claim=claim, model_dir=result.model_dir, best_epoch=result.best_epoch, log_tail=log_tail.text()
    )
    return TrainingJob.Status.CANCELLED


def describe_failure(error: BaseException) -> str:
    """Say in words why a job failed, for the job page."""
    from ml.errors import MLError

    if isinstance(error, MLError):
        message = str(error)
        return message[:1].upper() + message[1:]
    if isinstance(error, SoftTimeLimitExceeded):
        return "Timed out: the Celery soft time limit stopped the job. Raise TRAINING_JOB_TIME_LIMIT or train fewer epochs."
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return f"Out of memory: {error}. Lower the batch size or the image size and launch the job again."
    return f"Unexpected error {type(error).__name__}: {error}. The log tail below has the traceback."


class ProgressReporter:
    """The on_progress and should_stop callbacks of ml.training.fit for one claimed job.

    Both are called on every batch, so they touch the database at most once
    per `TRAINING_JOB_PROGRESS_INTERVAL` seconds, except at the end of an epoch.
    """

    def __init__(self, claim: services.Claim):
        self.claim = claim
        self.interval = conf.progress_write_seconds()
        self.stop_reason = ""
        self._last_write = 0.0
        self._last_check = 0.0

    def on_progress(self, event: dict[str, Any]) -> None:
        if event.get("phase") == "epoch_end":
            services.training_job_record_epoch(claim=self.claim, epoch=event["epoch"], metrics=event["metrics"])
            self._last_write = time.monotonic()
            return

        now = time.monotonic()
        if now - self._last_write < self.interval:
            return
        self._last_write = now
        services.training_job_record_progress(
            claim=self.claim,
            epoch=event["epoch"],
            batch=event["batch"],
            batches=event["batches"],
            loss=event.get("loss"),
        )

    def should_stop(self) -> bool:
        if self.stop_reason:
            return True
        now = time.monotonic()
        if now - self._last_check < self.interval:
            return False
        self._last_check = now
        self.stop_reason = services.training_job_should_stop(claim=self.claim)
        if self.stop_reason:
            logger.info("training job %s stops: %s", self.claim.job_id, self.stop_reason)
        return bool(self.stop_reason)


class Heartbeat:
    """A daemon thread that refreshes the job's heartbeat while the worker process lives.

    Training may go minutes without a progress event (loading data, the test
    evaluation), so liveness cannot ride on progress writes alone.
    """

    def __init__(self, claim: services.Claim):
        self.claim = claim
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{claim.job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stopped.wait(conf.heartbeat_seconds()):
                try:
                    services.training_job_heartbeat(claim=self.claim)
                except Exception:
                    logger.exception("heartbeat of training job %s failed", self.claim.job_id)
        finally:
            # Django opens one connection per thread, so this one is closed with the thread.
            connection.close()


class LogTail(logging.Handler):
    """Keeps the last log lines of a job for its failure report."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)

    def attach(self) -> None:
        root = logging.getLogger()
        root.addHandler(self)
        # The root logger may be at WARNING, but the ml package logs progress at INFO.
        for name in ("ml", "training_jobs"):
            if logging.getLogger(name).getEffectiveLevel() > logging.INFO:
                logging.getLogger(name).setLevel(logging.INFO)

    def detach(self) -> None:
        logging.getLogger().removeHandler(self)

    def text(self) -> str:
        return "\n".join(self.lines)
