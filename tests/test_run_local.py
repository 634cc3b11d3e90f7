"""`make run`'s script on its embedded defaults: SQLite, the filesystem broker, both workers, restarts, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import REPO_ROOT, make_image_bytes
from tests.test_deployment import _multipart

pytestmark = pytest.mark.e2e

# Variables that would point the site away from its embedded defaults: the
# services CI sets, and the folders the test settings set for this process.
SERVICE_VARIABLES = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_ENV",
    "HERITAGE_TEST_ROOT",
    "MEDIA_ROOT",
    "CELERY_BROKER_DIR",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _read_until(process: subprocess.Popen, marker: str, timeout: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return
    raise AssertionError(f"{marker!r} not printed within {timeout:.0f} s:\n{''.join(seen[-40:])}")


def start_process(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start `command` in the repository, in its own session, with stdout and stderr in one text pipe."""
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _training_worker_pids(supervisor_pid: int) -> set[int]:
    listed = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(supervisor_pid)], capture_output=True, text=True, check=False
    ).stdout
    return {int(line.split(None, 1)[0]) for line in listed.splitlines() if "-Q training" in line}


def test_run_local_serves_predicts_and_stops(tmp_path, tiny_model_dir):
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(
        {
            "PORT": str(port),
            "HERITAGE_VAR_DIR": str(tmp_path / "var"),
            "DEFAULT_MODEL_DIR": str(tiny_model_dir),
            "DJANGO_SUPERUSER_USERNAME": "curator",
            "DJANGO_SUPERUSER_PASSWORD": "curator-password-123",
            "PYTHONUNBUFFERED": "1",
        }
    )
    process = start_process([sys.executable, "scripts/run_local.py"], env)
    seen: list[str] = []
    try:
        _read_until(process, "Press Ctrl-C to stop", 120, seen)
        assert sum("Heritage Lens is running at" in line for line in seen) == 1
        assert sum("Staff login: curator" in line for line in seen) == 1
        # An empty message file, as a half-written message looks to a polling
        # worker, must be dropped without stopping the inference worker.
        queue_dir = tmp_path / "var" / "broker" / "queue"
        (queue_dir / "0_00000000-0000-0000-0000-000000000000.inference.msg").write_bytes(b"")

        body, content_type = _multipart("file", "portal.jpg", make_image_bytes("JPEG", (90, 60)))
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/images/?wait=30",
            data=body,
            headers={"Content-Type": content_type},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            result = json.loads(response.read())["results"][0]

        assert result["status"] == "done"

        # A worker that dies is started again; the rest of the site stays up.
        (killed,) = _training_worker_pids(process.pid)
        os.kill(killed, signal.SIGKILL)
        _read_until(process, "training worker exited with status -9; restarting it", 30, seen)
        deadline = time.monotonic() + 30
        while not _training_worker_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _training_worker_pids(process.pid) - {killed}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200
        assert (tmp_path / "var" / "db.sqlite3").is_file()
        assert (tmp_path / "var" / "broker" / "queue").is_dir()
        assert (tmp_path / "var" / "media" / "originals").is_dir()
    finally:
        # Ctrl-C in a terminal sends SIGINT to the foreground process group,
        # which here holds the script alone; the script stops its children.
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)

    output = "".join(seen) + output
    assert process.returncode == 0, output[-3000:]
    assert "Stopped." in output
    # The empty message file above must not have cost the inference worker its life.
    assert "inference worker exited" not in output


def _run_local_env(tmp_path, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update({"PORT": str(port), "HERITAGE_VAR_DIR": str(tmp_path / "var")})
    return env


def test_run_local_refuses_second_instance_on_same_folder(tmp_path):
    import fcntl

    (tmp_path / "var").mkdir()
    with open(tmp_path / "var" / "run_local.lock", "w") as held:
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)

        result = subprocess.run(
            [sys.executable, "scripts/run_local.py"],
            cwd=REPO_ROOT,
            env=_run_local_env(tmp_path, _free_port()),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 1
    assert "Another `make run` (process 4242) is already running" in result.stderr
    assert "HERITAGE_VAR_DIR" in result.stderr
    assert not (tmp_path / "var" / "db.sqlite3").exists()


def test_run_local_refuses_busy_port(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        result = subprocess.run(
            [sys.executable, "scripts/run_local.py"],
            cwd=REPO_ROOT,
            env=_run_local_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"make run PORT={port + 1}" in result.stderr
