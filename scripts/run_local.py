"""Start the site, an inference worker (with the periodic sweep) and a training worker; Ctrl-C stops all.

A process that exits on its own is started again, up to RESTART_LIMIT times
within RESTART_WINDOW_SECONDS; after that the script stops everything.

Run by `make run` with the virtual environment's Python. Settings come from
the environment like everywhere else; with none set, it uses SQLite and
kombu's filesystem broker under var/, so no server is needed.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The same folder as settings.VAR_DIR: database, broker, media, beat schedule.
VAR_DIR = Path(os.environ.get("HERITAGE_VAR_DIR", REPO_ROOT / "var"))
STOP_TIMEOUT_SECONDS = 20
RESTART_LIMIT = 5
RESTART_WINDOW_SECONDS = 300


def _manage(*args: str, echo: bool = True) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, check=True, stdout=subprocess.PIPE, text=True
    )
    if echo:
        print(result.stdout, end="", flush=True)
    return result.stdout


def _processes(host: str, port: int) -> dict[str, list[str]]:
    celery = [sys.executable, "-m", "celery", "-A", "heritage_site", "worker", "--loglevel", "INFO"]
    return {
        "web": [sys.executable, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        "inference worker": [
            *celery,
            "-Q",
            "inference",
            "-n",
            "inference@%h",
            "--pool",
            "prefork",
            "--concurrency",
            os.environ.get("INFERENCE_CONCURRENCY", "1"),
            # Embedded beat runs the sweep that queues predictions left pending.
            "--beat",
            "--schedule",
            str(VAR_DIR / "celerybeat-schedule"),
        ],
        "training worker": [*celery, "-Q", "training", "-n", "training@%h", "--pool", "solo"],
    }


def _lock_var_dir():
    """Take the var/ folder's lock, or return None when another `make run` holds it.

    Two instances on one folder would share a database and worker names, so
    the second's training worker would mark the first's running job as lost.
    The lock is released when this process exits, however it exits.
    """
    # Kept open until the process exits, because closing it releases the lock.
    handle = open(VAR_DIR / "run_local.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        print(
            f"Another `make run` (process {holder}) is already running with {VAR_DIR}. "
            "Stop it first, or give this one its own folder with HERITAGE_VAR_DIR.",
            file=sys.stderr,
        )
        return None

    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As servers do, so that connections of a stopped server that linger
        # in TIME_WAIT do not count as a program using the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_port(host: str, port: int, children: dict[str, subprocess.Popen], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with status {child.returncode} during start-up", file=sys.stderr)
                return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.3)
    print(f"the web server did not open port {port} within {timeout:.0f} s", file=sys.stderr)
    return False


def _stop(children: dict[str, subprocess.Popen]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for name, child in children.items():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop within {STOP_TIMEOUT_SECONDS} s; killing it", file=sys.stderr)
            child.kill()
            child.wait()


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heritage_site.settings")
    VAR_DIR.mkdir(parents=True, exist_ok=True)

    lock = _lock_var_dir()
    if lock is None:
        return 1
    if not _port_is_free(host, port):
        print(
            f"Port {port} on {host} is already in use by another program. "
            f"Stop that program, or choose another port: make run PORT={port + 1}",
            file=sys.stderr,
        )
        return 1

    _manage("migrate", "--noinput", "-v", "0")
    # WhiteNoise serves the collected copies, which DEBUG=0 needs (runserver serves them only with DEBUG on).
    _manage("collectstatic", "--noinput", "-v", "0")
    # Printed once, below the address, when the site is up.
    site_summary = _manage("prepare_site", echo=False)

    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    # Each child gets its own session so that Ctrl-C reaches only this
    # supervisor, which then stops the children in order.
    commands = _processes(host, port)

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(commands[name], cwd=REPO_ROOT, start_new_session=True)

    children = {name: start(name) for name in commands}
    if not _wait_for_port(host, port, children):
        _stop(children)
        return 1

    shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    print(f"\nHeritage Lens is running at http://{shown_host}:{port}/  (admin: http://{shown_host}:{port}/admin/)")
    print(site_summary.strip())
    print("Press Ctrl-C to stop the site and its workers.\n", flush=True)

    # A restarted worker loses nothing: its unacknowledged task goes back to
    # the queue, the sweep re-queues pending predictions, and a training job
    # it was running is marked failed by the lost-job check.
    exit_code = 0
    restarts: dict[str, list[float]] = {name: [] for name in commands}
    while not stopping:
        for name, child in children.items():
            if stopping or child.poll() is None:
                continue
            now = time.monotonic()
            restarts[name] = [moment for moment in restarts[name] if now - moment < RESTART_WINDOW_SECONDS]
            if len(restarts[name]) >= RESTART_LIMIT:
                print(
                    f"{name} exited with status {child.returncode}, its {RESTART_LIMIT + 1}th exit within "
                    f"{RESTART_WINDOW_SECONDS} s; stopping everything",
                    file=sys.stderr,
                    flush=True,
                )
                exit_code = 1
                stopping = True
                continue
            print(f"{name} exited with status {child.returncode}; restarting it", file=sys.stderr, flush=True)
            restarts[name].append(now)
            children[name] = start(name)
        time.sleep(0.5)

    print("Stopping…", flush=True)
    _stop(children)
    print("Stopped.")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
