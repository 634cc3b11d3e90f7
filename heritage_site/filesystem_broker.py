"""Make kombu's filesystem transport safe against half-written messages.

kombu 5.7's filesystem transport creates a message file under its final
`.msg` name and writes the payload afterwards, while consumers pick up any
`.msg` file without a lock. A worker that polls in between reads an empty
file, fails to decode it, and Celery stops the worker with an unrecoverable
error. `make run` uses this transport, so one unlucky poll under CPU load
took the local site down.

`install()` replaces the channel's put and get. A message is written to a
hidden temporary name and renamed into place, so it appears whole. A file
that still does not decode is logged and dropped instead of stopping the
worker. Production uses Redis and never loads this transport.
"""

from __future__ import annotations

import logging
import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

# Consumers skip names that start with a dot, and kombu's own consumer skips
# any name whose part after the first dot is not "<queue>.msg".
_HIDDEN_PREFIX = "."


def _put(self, queue, payload, **kwargs):
    filename = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
    final_path = os.path.join(self.data_folder_out, filename)
    temporary_path = os.path.join(self.data_folder_out, f"{_HIDDEN_PREFIX}{filename}.tmp")
    try:
        with open(temporary_path, "wb") as file:
            file.write(str_to_bytes(dumps(payload)))
        os.replace(temporary_path, final_path)
    except OSError as error:
        raise filesystem.ChannelError(f"Cannot add file {final_path!r} to directory") from error


def _get(self, queue):
    queue_suffix = f"{queue}.msg"
    for filename in sorted(os.listdir(self.data_folder_in)):
        if filename.startswith(_HIDDEN_PREFIX) or filename.partition(".")[2] != queue_suffix:
            continue

        # Renaming claims the file: only one consumer's rename can succeed.
        path = os.path.join(self.data_folder_in, filename)
        claimed_path = os.path.join(self.data_folder_in, f"{_HIDDEN_PREFIX}claimed-{filename}")
        try:
            os.rename(path, claimed_path)
        except OSError:
            continue
        try:
            with open(claimed_path, "rb") as file:
                payload = file.read()
        finally:
            _dispose(self, claimed_path, filename)

        try:
            return loads(bytes_to_str(payload))
        except ValueError as error:
            logger.error("dropping unreadable broker message %s (%d bytes): %s", filename, len(payload), error)
    raise filesystem.Empty()


def _dispose(channel, claimed_path: str, filename: str) -> None:
    if channel.store_processed:
        os.replace(claimed_path, os.path.join(channel.processed_folder, filename))
    else:
        os.remove(claimed_path)


def install() -> None:
    """Patch kombu's filesystem channel; calling it again changes nothing."""
    filesystem.Channel._put = _put
    filesystem.Channel._get = _get
