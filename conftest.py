"""Fixtures shared by every app's tests: files in a temporary folder, a tiny model, services, workers.

Tests that need PostgreSQL, Redis, Chromium or docker-compose skip with the
reason when the service is missing here, and fail instead when CI=true,
because CI installs and starts all of them.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def pytest_sessionfinish(session, exitstatus) -> None:
    """Remove the temporary folder that the test settings created for this session."""
    from django.conf import settings

    if getattr(settings, "TEST_ROOT_CREATED", False):
        shutil.rmtree(os.environ["HERITAGE_TEST_ROOT"], ignore_errors=True)


def require_service(available: bool, reason: str) -> None:
    """Skip the test when a service is missing, except in CI, where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


def port_open(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    """Keep uploaded files of each test in its own temporary folder."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight model that loads in well under a second."""
    from ml.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(autouse=True)
def default_model_is_tiny(settings, tiny_model_dir) -> Path:
    """Serve the tiny model as the default, so no test depends on the trained one."""
    settings.DEFAULT_MODEL_DIR = str(tiny_model_dir)
    return tiny_model_dir


@pytest.fixture
def active_model(db, tiny_model_dir):
    from classifier import services

    version = services.model_version_register(model_dir=tiny_model_dir, is_default=True)
    return services.model_version_activate(version)


def make_image_bytes(
    image_format: str = "JPEG", size: tuple[int, int] = (64, 48), mode: str = "RGB", **save_options
) -> bytes:
    """Return an encoded image with a gradient, so that each size and format gives distinct bytes."""
    image = Image.linear_gradient("L").resize(size).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_options)
    return buffer.getvalue()


@pytest.fixture
def jpeg_bytes() -> bytes:
    return make_image_bytes("JPEG", (80, 60))


@pytest.fixture
def redis_url() -> str:
    require_service(port_open(REDIS_URL), f"Redis is not reachable at {REDIS_URL}")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


class WorkerProcess:
    """A real ``celery worker`` process that shares the test's database and media folder."""

    def __init__(self, env: dict[str, str], queues: str, name: str, log_path: Path):
        self.env = env
        self.queues = queues
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "heritage_site",
            "worker",
            "-Q",
            self.queues,
            "-n",
            f"{self.name}@%h",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        # The child keeps its own copy of the file descriptor.
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_until_ready(log_start)
        return self

    def wait_until_ready(self, log_start: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Celery worker exited with {self.process.returncode}:\n{self.log()}")
            if b" ready." in self.log_path.read_bytes()[log_start:]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"Celery worker not ready after {timeout:.0f} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def _database_url_for_worker() -> str:
    from django.db import connection

    database = connection.settings_dict
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    user = database.get("USER") or ""
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host = database.get("HOST") or "127.0.0.1"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{database['NAME']}"


@pytest.fixture
def start_worker(settings, tmp_path, redis_url, transactional_db) -> Iterator[Callable[..., WorkerProcess]]:
    """Start Celery workers on Redis that use this test's database, media folder and default model.

    The test process sends tasks to the same Redis database, so its uploads
    reach the worker.
    """
    from heritage_site.celery import app

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "heritage_site.settings_test",
        "DATABASE_URL": _database_url_for_worker(),
        "CELERY_BROKER_URL": redis_url,
        "HERITAGE_TEST_BROKER_URL": redis_url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DEFAULT_MODEL_DIR": str(settings.DEFAULT_MODEL_DIR),
        "INFERENCE_DEVICE": "cpu",
        "PYTHONUNBUFFERED": "1",
    }
    previous = (app.conf.broker_url, app.conf.broker_transport_options)
    use_broker(redis_url, {"visibility_timeout": 3600})
    workers: list[WorkerProcess] = []

    def start(queues: str = "inference", name: str = "test-inference") -> WorkerProcess:
        worker = WorkerProcess(env, queues, name, tmp_path / f"{name}.log")
        workers.append(worker)
        return worker.start()

    yield start

    for worker in workers:
        worker.stop()
    use_broker(*previous)


def use_broker(url: str, transport_options: dict | None = None) -> None:
    """Point the test process's Celery app at another broker, dropping pooled connections."""
    from kombu import pools

    from heritage_site.celery import app

    app.conf.broker_url = url
    if transport_options is not None:
        app.conf.broker_transport_options = transport_options
    # Celery and kombu cache connection and producer pools built from the
    # old URL; drop them so the next publish connects to the new one.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def wait_for(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s: {message}")
