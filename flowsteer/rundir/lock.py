"""One owner at a time: an exclusive lock on a file that dies with its process (kill -9 included).

``flock`` locks belong to the open file, so the kernel releases them when the owner exits however it exits: a
crashed run never blocks the next attempt, and no stale-lock cleanup is ever needed. The file holds a line about
the owner (pid, host, start time) for the message a second process gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path, busy: Callable[[str], Exception], wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block.

    When another process holds it, wait up to ``wait`` seconds (a node lost on shared storage releases its locks
    only once its lease expires), then raise ``busy(owner)``, where ``owner`` describes the holder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    raise busy(handle.read().strip() or "another process") from None
                time.sleep(0.5)
        since = datetime.now(UTC).isoformat(timespec="seconds")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {since}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
