"""Settings of the training-jobs app, each with a default that suits a single machine.

`heritage_site/settings.py` may override any of them, usually from the
environment, and this module only fills in what it leaves out.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def jobs_root() -> Path:
    """Folder under which each job writes its model, as `job-<id>/`."""
    configured = getattr(settings, "TRAINING_JOBS_ROOT", None)
    if configured:
        return Path(configured)
    return Path(settings.MEDIA_ROOT) / "training_jobs"


def time_limit_seconds() -> int:
    """Maximum wall-clock seconds one job may run before it is stopped and marked failed."""
    return int(getattr(settings, "TRAINING_JOB_TIME_LIMIT", 24 * 3600))


def heartbeat_seconds() -> float:
    """Interval at which a running job's worker refreshes `heartbeat_at`."""
    return float(getattr(settings, "TRAINING_JOB_HEARTBEAT_INTERVAL", 10))


def stale_seconds() -> float:
    """Age of the last heartbeat after which a running job counts as lost."""
    return float(getattr(settings, "TRAINING_JOB_STALE_AFTER", 120))


def progress_write_seconds() -> float:
    """Minimum interval between two progress writes to the job row."""
    return float(getattr(settings, "TRAINING_JOB_PROGRESS_INTERVAL", 2))


def loader_workers() -> int:
    """DataLoader worker processes per job (0 loads images in the training process)."""
    return int(getattr(settings, "TRAINING_JOB_LOADER_WORKERS", 1))


def device() -> str:
    """Torch device for training: "auto" picks the GPU when one is present."""
    return str(getattr(settings, "TRAINING_JOB_DEVICE", "auto"))
