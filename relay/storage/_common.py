"""Helpers shared by the storage backends: coarse time arithmetic and fixed error messages.

Every backend decides expiry from the ``now`` its caller passes, with the same arithmetic, so
the contract suite can drive both stores through the same timeline.
"""

from __future__ import annotations

from relay.storage.records import SECONDS_PER_DAY, StoreLimits

__all__ = [
    "MSG_CLOSED",
    "MSG_FULL",
    "MSG_ID_COLLISION",
    "MSG_NOT_FOUND",
    "MSG_QUOTA",
    "MSG_UNAVAILABLE",
    "day_of",
    "envelope_lifetime",
    "mailbox_deadline",
    "mailbox_expired",
]

# Fixed messages: they name the invariant, never an id or a key (STYLE.md §3.3).
MSG_NOT_FOUND = "no such mailbox"
MSG_QUOTA = "mailbox quota exceeded"
MSG_ID_COLLISION = "mailbox id already in use"
MSG_UNAVAILABLE = "storage backend unavailable"
MSG_FULL = "storage backend is out of space"
MSG_CLOSED = "store is closed"


def day_of(now: int) -> int:
    """Return the day number (days since the epoch) of the second ``now``."""
    return now // SECONDS_PER_DAY


def envelope_lifetime(envelope_ttl_s: int, ttl: int | None) -> int:
    """Seconds an envelope is kept: its own ``ttl`` (protocol.md §5.7, revision 14), bounded
    by the store's envelope TTL; without one, the envelope TTL."""
    return envelope_ttl_s if ttl is None else max(1, min(ttl, envelope_ttl_s))


def mailbox_deadline(active_day: int, limits: StoreLimits) -> int:
    """Return the first second at which a mailbox last active on ``active_day`` is idle.

    Activity is recorded by day only, so the idle period is counted from the end of that day:
    a mailbox never expires earlier than ``mailbox_idle_ttl_s`` after its last real activity,
    and at most one day later.
    """
    return (active_day + 1) * SECONDS_PER_DAY + limits.mailbox_idle_ttl_s


def mailbox_expired(active_day: int, now: int, limits: StoreLimits) -> bool:
    """Return True if a mailbox last active on ``active_day`` is idle-expired at ``now``."""
    return now >= mailbox_deadline(active_day, limits)
