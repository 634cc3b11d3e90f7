"""The liveness file that the training worker's container health check reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from conftest import REPO_ROOT
from heritage_site.liveness import LivenessFile
from tests.test_run_local import SERVICE_VARIABLES, start_process

COMPOSE_PATH = "/tmp/celery-worker-alive"


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _health_check(path) -> int:
    """Run the compose file's training-worker health check against `path`."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    kind, command = compose["services"]["training-worker"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    assert COMPOSE_PATH in command
    # Compose replaces $$ with $ before the shell runs the command.
    command = command.replace("$$", "$").replace(COMPOSE_PATH, str(path))
    return subprocess.run(["sh", "-c", command], check=False, timeout=10).returncode


def test_liveness_file_touched_until_stopped(tmp_path):
    path = tmp_path / "run" / "alive"
    liveness = LivenessFile(path, interval=0.05).start()
    try:
        assert path.exists()
        os.utime(path, (0, 0))
        assert _wait_for(lambda: path.stat().st_mtime > 0, timeout=5)
    finally:
        liveness.stop()

    assert not path.exists()
    assert not liveness._thread.is_alive()


def test_compose_health_check_needs_fresh_file(tmp_path):
    path = tmp_path / "alive"
    assert _health_check(path) != 0  # no file: the worker never started

    path.touch()
    assert _health_check(path) == 0

    stale = time.time() - 5 * 60
    os.utime(path, (stale, stale))
    assert _health_check(path) != 0


@pytest.mark.e2e
def test_solo_worker_liveness_file_lifecycle(tmp_path):
    path = tmp_path / "alive"
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update({"HERITAGE_VAR_DIR": str(tmp_path / "var"), "CELERY_LIVENESS_FILE": str(path)})
    command = [sys.executable, "-m", "celery", "-A", "heritage_site", "worker", "-Q", "training",
               "--pool", "solo", "-n", f"liveness-{uuid.uuid4().hex[:8]}@%h"]  # fmt: skip
    worker = start_process(command, env)
    try:
        assert _wait_for(path.exists, timeout=90), "the worker did not create its liveness file"
        assert _health_check(path) == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)

    assert worker.returncode == 0, output[-2000:]
    assert not path.exists()
