"""Room kept for owners when the disk fills (SQLite; issue 19, finding 2).

When the file system holding the database is full, every write fails, including the ones
that free space: an ack, a fetch (which refreshes the mailbox's idle timer), a delete and the
challenges they need each append a little to the write-ahead log first. So the relay keeps a
*reserve*: a file of ``size`` bytes beside the database, allocated for real
(``posix_fallocate``, so the blocks are taken, not a sparse promise). When a write fails for
lack of space, the store enters its *full* state: it deletes the reserve, which gives those
writes room, while the service refuses everything that adds data (``STORAGE_FULL``: deposits,
new mailboxes, uploads). The state ends when the file system has room again (at least twice
the reserve free, checked at most once a second): the reserve is allocated again first.

Nothing of a mailbox is ever in the reserve; it holds zeros and is recreated at start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Final

import structlog

__all__ = ["RESERVE_SUFFIX", "SpaceGuard"]

log = structlog.get_logger("blindrelay.storage")

#: The reserve's file name: the database's, plus this.
RESERVE_SUFFIX: Final = ".reserve"

#: How often, at most, the full state looks at the free space.
CHECK_INTERVAL_S: Final = 1.0

#: Free space asked for to leave the full state when there is no reserve to reallocate.
MIN_HEADROOM: Final = 4 << 20


class SpaceGuard:
    """The reserve file of one database and the store's full state.

    Args:
        database: the database file (the reserve is ``<database>.reserve``).
        size: bytes to keep in reserve (0: none; the full state is still tracked).
    """

    def __init__(self, database: Path, size: int) -> None:
        self.path = database.with_name(database.name + RESERVE_SUFFIX)
        self.size = size
        self._full = False
        self._checked = 0.0
        self._lock = threading.Lock()  # entered from the writer thread, left from the loop

    @property
    def headroom(self) -> int:
        """Free bytes the file system needs to leave the full state."""
        return max(2 * self.size, MIN_HEADROOM)

    def prepare(self) -> None:
        """Allocate the reserve at start (blocking; the caller runs it in a thread). With too
        little room for it the store starts in the full state."""
        if self.size and not self._allocate():
            self._enter()

    def _allocate(self) -> bool:
        """Make the reserve ``size`` bytes of allocated blocks; False if there is no room
        (nothing is left half-allocated)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.size)
            os.fsync(fd)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                log.warning("storage_reserve_failed", reason=type(exc).__name__)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            return False
        finally:
            os.close(fd)

    @property
    def full(self) -> bool:
        """Whether the store is in the full state (no I/O: see :meth:`check`)."""
        return self._full

    def on_full(self) -> None:
        """A write failed for lack of space: enter the full state, giving up the reserve."""
        if not self._full:
            self._enter()

    def _enter(self) -> None:
        with self._lock:
            if self._full:
                return
            self._full = True
            self._checked = time.monotonic()
            released = False
            if self.path.exists():
                with contextlib.suppress(OSError):
                    self.path.unlink()
                    released = True
        # Once per transition, at error level: an operator must free space (deploy/README.md).
        log.error(
            "storage_full",
            reason="no space left for the database: deposits are refused, owners can still"
            " ack, fetch and delete",
            data="reserve released" if released else "no reserve",
        )

    def check(self) -> bool:
        """In the full state, at most once a second, look at the free space: with enough,
        allocate the reserve again and leave the state. Returns :attr:`full`."""
        if not self._full:
            return False
        now = time.monotonic()
        if now - self._checked < CHECK_INTERVAL_S:
            return True
        self._checked = now
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return True
        if free < self.headroom or (self.size and not self._allocate()):
            return True
        with self._lock:
            self._full = False
        log.warning("storage_space_recovered")
        return False
