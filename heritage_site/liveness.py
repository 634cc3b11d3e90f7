"""A file a worker touches while its process lives, for container health checks.

`celery inspect ping` replies come from the worker's main loop. A solo-pool
training worker runs its job in that loop, so it cannot reply for hours,
and a ping-based health check would call a busy worker dead. A daemon
thread that touches a file keeps running while the job trains; the health
check then asks only that the file is fresh. A job that stops making
progress is caught by the training-job heartbeat instead.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

logger = logging.getLogger(__name__)


class LivenessFile:
    def __init__(self, path: str | Path, interval: float = 20.0):
        self.path = Path(path)
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness-file", daemon=True)

    def start(self) -> LivenessFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._thread.start()
        logger.info("touching %s every %.0f s while this worker lives", self.path, self.interval)
        return self

    def stop(self) -> None:
        """Stop touching the file and remove it, so a stopped worker reads as dead at once."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 1)
        self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.path.touch()
            except OSError as error:  # a full or read-only disk must not kill the worker
                logger.warning("cannot touch liveness file %s: %s", self.path, error)
