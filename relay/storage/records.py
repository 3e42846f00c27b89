"""The values stores take and return: limits, records, outcomes and wake-up events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from clientlib.wire.client_frames import Deposit, Fanout
from clientlib.wire.frames import Boundaries, StoredEnvelope

__all__ = [
    "SECONDS_PER_DAY",
    "SECONDS_PER_HOUR",
    "AuditRecord",
    "DepositOutcome",
    "FrankingKey",
    "MailboxRecord",
    "MailboxSnapshot",
    "RelayStamp",
    "ReportRecord",
    "ReportResolution",
    "StoreGauges",
    "StoreLimits",
    "WakeCallback",
    "WakeEvent",
    "online_wake",
]

SECONDS_PER_DAY = 86_400
#: Length of the fixed window of the one-time prekey handout limit (hour ``now // 3600``).
SECONDS_PER_HOUR = 3_600


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Limits a store enforces, from the relay configuration."""

    max_envelopes: int = 10_000  # per mailbox
    max_bytes: int = 64 << 20  # per mailbox, ciphertext bytes
    envelope_ttl_s: int = 21 * SECONDS_PER_DAY
    dedupe_window_s: int = SECONDS_PER_DAY
    mailbox_idle_ttl_s: int = 180 * SECONDS_PER_DAY
    # Franking and moderation (protocol.md §4.11, §8).
    franking_rotation_s: int = 7 * SECONDS_PER_DAY  # a new franking key this often
    report_window_s: int = 30 * SECONDS_PER_DAY  # a retired key verifies reports this long
    report_retention_s: int = 90 * SECONDS_PER_DAY  # a report is kept this long
    audit_retention_s: int = 365 * SECONDS_PER_DAY  # an audit entry is kept this long


@dataclass(frozen=True, slots=True)
class MailboxRecord:
    """What the relay keeps about a mailbox: its ids, its owner key, a day-coarse time, its
    kind and (contact addresses only) its boundaries."""

    rid: bytes
    sid: bytes
    owner_key: bytes
    created_day: int  # days since the epoch, never finer
    kind: str = "open"  # open | pair | addr
    boundaries: Boundaries | None = None  # addr only (None there means the defaults)

    def __repr__(self) -> str:
        return "MailboxRecord(<redacted>)"


@dataclass(frozen=True, slots=True)
class MailboxSnapshot:
    """Every datum a store keeps for one mailbox (protocol.md §4.10), counts for collections.

    ``oldest_ts`` is the receive second of the oldest stored envelope (the service coarsens
    it); ``prekey_hour`` / ``prekeys_handed`` the hourly one-time handout window;
    ``requests_day`` / ``requests`` the daily contact request counter (addr only).
    """

    record: MailboxRecord
    active_day: int
    last_seq: int
    envelopes: int
    stored_bytes: int
    oldest_ts: int | None
    dedupe_records: int
    prekeys_left: int
    prekey_static: bool
    prekey_hour: int | None
    prekeys_handed: int
    caps: int
    bans: int
    requests_day: int | None
    requests: int
    suspended: bool = False

    def __repr__(self) -> str:
        return "MailboxSnapshot(<redacted>)"


@dataclass(frozen=True, slots=True)
class RelayStamp:
    """The relay franking tag of a deposit (``ft``) and its context (``fx``), computed for a
    mailbox of kind ``kind`` (protocol.md §4.11)."""

    tag: bytes
    ctx: bytes
    kind: str


@dataclass(frozen=True, slots=True)
class FrankingKey:
    """A relay franking key: ``kid`` (u32), 32 secret bytes, and when it was created.

    A key is *current* until a key with a higher ``kid`` exists; it *retires* when the next
    one is created, and is destroyed ``report_window_s`` after that.
    """

    kid: int
    secret: bytes
    created: int

    def __repr__(self) -> str:
        return f"FrankingKey(kid={self.kid}, created={self.created}, secret=<redacted>)"


@dataclass(frozen=True, slots=True)
class ReportResolution:
    """What a moderator decided about a report."""

    action: str  # none | revoke | suspend
    moderator: str
    resolved_at: int
    note: str


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A verified abuse report as the moderation queue keeps it (protocol.md §4.11, §8).

    ``sid`` is the send id of the mailbox that filed it (the mailbox the envelope was
    delivered to, from the tag's context); ``kid``, ``day``, ``source_kind`` and ``source``
    are the rest of that context. ``resolution`` is None while the report is open.
    """

    id: bytes
    created: int
    reason: str
    note: str | None
    msg: bytes
    attachments: tuple[bytes, ...]
    sender_key: bytes
    recipient_key: bytes
    sid: bytes
    kid: int
    day: int
    source_kind: int
    source: bytes
    verified_at: int
    resolution: ReportResolution | None = None

    @property
    def status(self) -> str:
        return "open" if self.resolution is None else "resolved"

    def __repr__(self) -> str:
        return f"ReportRecord(status={self.status}, reason={self.reason}, <redacted>)"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the append-only moderation audit log; ``seq`` is assigned by the store
    (0 in entries passed to it)."""

    ts: int
    moderator: str
    action: str
    report_id: bytes | None
    detail: str
    seq: int = 0


@dataclass(frozen=True, slots=True)
class StoreGauges:
    """Aggregates of a whole store, kept as counters by the writes themselves (so reading
    them costs the same at any size): mailbox records, stored envelopes and their
    ciphertext bytes (expired ones not yet swept included)."""

    mailboxes: int
    envelopes: int
    bytes: int


@dataclass(frozen=True, slots=True)
class DepositOutcome:
    """Result of a deposit: the mailbox it landed in and its sequence number."""

    rid: bytes
    seq: int
    ts: int
    duplicate: bool

    def __repr__(self) -> str:
        return f"DepositOutcome(seq={self.seq}, duplicate={self.duplicate})"


@dataclass(frozen=True, slots=True)
class WakeEvent:
    """A notification for the process(es) holding a subscription to ``rid``.

    ``stored``: envelope ``seq`` was stored (``env`` is set when the event is local, so the
    subscriber can push without reading storage). ``online``: an online-only envelope to push
    now or drop (``env`` always set, ``seq`` 0). ``deleted``: the mailbox is gone.
    ``recheck``: events may have been lost (a wake-up connection broke): read storage for
    anything not pushed yet (never sent between processes).

    ``at`` (``stored``): the wall-clock second (``time.time()``, a float) at which the
    envelope was durably stored, 0 if unknown; the subscriber measures the wake-up lag from
    it. ``via``: how the event reached this process (``local``: the process that stored it;
    ``pubsub``: from another process through Redis).
    """

    kind: Literal["stored", "online", "deleted", "recheck"]
    rid: bytes
    seq: int = 0
    env: StoredEnvelope | None = None
    at: float = 0.0
    via: Literal["local", "pubsub"] = "local"


WakeCallback = Callable[[WakeEvent], None]


def online_wake(
    rid: bytes, frame: Deposit | Fanout, stamp: RelayStamp | None, now: int
) -> WakeEvent:
    """The ``online`` event of an online-only envelope (a single deposit or one fan-out
    entry): never stored, so ``seq`` 0 and the relay's tag, if any, carried in ``env``."""
    env = StoredEnvelope(
        seq=0,
        eid=frame.eid,
        ts=now,
        flags=frame.flags,
        ct=frame.ct,
        fc=frame.fc,
        ft=stamp.tag if stamp is not None else None,
        fx=stamp.ctx if stamp is not None else None,
    )
    return WakeEvent(kind="online", rid=rid, env=env)
