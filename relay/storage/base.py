"""The storage interface every relay backend implements (SQLite, Redis).

The storage layer owns the data; :mod:`relay.service` owns the logic. Stores receive the
current time as an argument (whole seconds since the epoch) and never read a clock, so the
contract suite can drive expiry deterministically.

Guarantees every backend gives (checked by ``tests/contract/test_store.py``):

* ``deposit`` returns only after the envelope is durably stored (SQLite: committed with
  ``synchronous=FULL``; Redis: the write reached the AOF under ``appendfsync always``).
* ``deposit`` is idempotent per ``(mailbox, eid)`` for the store's dedupe window: a retry
  returns the first outcome (same ``seq``, ``duplicate=True``) and stores nothing.
* Sequence numbers are strictly increasing per mailbox, starting at 1, never reused, even
  after acks, expiry or a restart. ``fetch`` returns envelopes in ``seq`` order.
* Quotas are checked in the same atomic step as the insert.
* ``delete_mailbox`` removes the mailbox, its send-id index, every envelope, every dedupe
  record and all its prekey data (static part, one-time items, fetch window) at once;
  afterwards the ids behave exactly like ids that never existed.
* Every record expires: envelopes after ``envelope_ttl_s``; dedupe records after
  ``dedupe_window_s``; mailboxes after ``mailbox_idle_ttl_s`` without owner activity, and
  their prekey data with them (an idle-expired mailbox's prekeys are never handed out).
* Prekey hosting: ``put_prekeys`` applies a whole upload or nothing (quota checked in the
  same atomic step); ``take_prekeys`` pops one-time items oldest first, each at most once
  even under concurrency, and counts them against the hourly window in the same atomic step.
  Prekey blobs are opaque: no store ever looks inside them.
* Consent (protocol.md §4.8-§4.10): a mailbox has a kind (``open``, ``pair``, ``addr``) fixed
  at creation. A deposit to a ``pair`` mailbox whose capability hash is not registered fails
  exactly like a deposit to an unknown mailbox (:class:`MailboxNotFound`), checked in the same
  atomic step as the insert. A deposit to an ``addr`` mailbox is checked against its
  boundaries, bans and daily counter in the same atomic step as the insert, and counted only
  if stored (a duplicate by eid is not counted). Capability hashes, boundaries, bans and the
  daily counter are removed with the mailbox and expire with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from clientlib.wire.frames import Boundaries, StoredEnvelope

__all__ = [
    "SECONDS_PER_HOUR",
    "BoundaryExceeded",
    "DepositOutcome",
    "EnvelopeStore",
    "IdCollision",
    "MailboxNotFound",
    "MailboxRecord",
    "MailboxSnapshot",
    "PowRequired",
    "QuotaExceeded",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "StoreLimits",
    "WakeEvent",
    "Wakeups",
    "WrongKind",
]

SECONDS_PER_DAY = 86_400
#: Length of the fixed window of the one-time prekey handout limit (hour ``now // 3600``).
SECONDS_PER_HOUR = 3_600


class StorageError(Exception):
    """Root of the errors a store raises on purpose. Messages never contain ids or keys."""


class MailboxNotFound(StorageError):
    """The mailbox does not exist (or expired, or was deleted)."""


class QuotaExceeded(StorageError):
    """The mailbox holds too many envelopes, bytes or one-time prekeys; nothing was stored."""


class WrongKind(StorageError):
    """The operation does not apply to this mailbox's kind (e.g. ``set_caps`` on a contact
    address, or a deposit to a contact address without a handle); nothing changed."""


class BoundaryExceeded(StorageError):
    """A contact request is larger than the address accepts, or references attachments the
    address does not accept; nothing was stored."""


class PowRequired(StorageError):
    """The contact address asks for more proof of work than the deposit was verified for."""


class IdCollision(StorageError):
    """A receive id or send id chosen for a new mailbox is already in use."""


class StorageUnavailable(StorageError):
    """The backend cannot be reached or answered an error; nothing is known to be stored."""


class StorageFull(StorageError):
    """The backend is out of space; nothing was stored."""


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Limits a store enforces, from the relay configuration."""

    max_envelopes: int = 10_000  # per mailbox
    max_bytes: int = 64 << 20  # per mailbox, ciphertext bytes
    envelope_ttl_s: int = 21 * SECONDS_PER_DAY
    dedupe_window_s: int = SECONDS_PER_DAY
    mailbox_idle_ttl_s: int = 180 * SECONDS_PER_DAY


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

    def __repr__(self) -> str:
        return "MailboxSnapshot(<redacted>)"


@dataclass(frozen=True, slots=True)
class DepositOutcome:
    """Result of a deposit: the mailbox it landed in and its sequence number."""

    rid: bytes
    seq: int
    ts: int
    duplicate: bool

    def __repr__(self) -> str:
        return f"DepositOutcome(seq={self.seq}, duplicate={self.duplicate})"


class EnvelopeStore(Protocol):
    """Durable storage of mailboxes and envelopes.

    Every method may raise :class:`StorageUnavailable` or :class:`StorageFull` in addition
    to the errors listed.
    """

    backend: str

    async def open(self) -> None:
        """Connect, create or migrate the schema, start background workers.

        Raises:
            StorageUnavailable: the backend cannot be reached or is unsafe (see
                ``durability_problems``).
        """

    async def aclose(self) -> None:
        """Flush pending writes and release every resource. Idempotent."""

    async def durability_problems(self) -> list[str]:
        """Return human-readable reasons why acknowledged data could be lost (empty: safe)."""

    async def ping(self) -> None:
        """Cheap liveness check for ``/readyz``.

        Raises:
            StorageUnavailable: the backend does not answer.
        """

    async def create_mailbox(self, record: MailboxRecord, now: int) -> None:
        """Create a mailbox.

        Raises:
            IdCollision: ``record.rid`` or ``record.sid`` is already used by any mailbox.
        """

    async def get_mailbox(self, rid: bytes, now: int) -> MailboxRecord | None:
        """Return the mailbox with receive id ``rid``, or None if it does not exist."""

    async def resolve_sid(self, sid: bytes, now: int) -> bytes | None:
        """Return the receive id of the mailbox whose send id is ``sid``, or None."""

    async def resolve_online(
        self, sid: bytes, cap_hash: bytes | None, now: int
    ) -> tuple[bytes, str] | None:
        """Return ``(rid, kind)`` of the live mailbox whose send id is ``sid``, for an
        online-only envelope (pushed, never stored).

        Returns None if there is no such mailbox, or if it is a ``pair`` mailbox and
        ``cap_hash`` is None or not registered on it (the same answer for both).
        """

    async def get_boundaries(self, sid: bytes, now: int) -> tuple[str, Boundaries | None] | None:
        """Return ``(kind, boundaries)`` of the live mailbox whose send id is ``sid``.

        ``boundaries`` is None unless the kind is ``addr``. None if there is no such mailbox.
        """

    async def touch_mailbox(self, rid: bytes, now: int) -> None:
        """Record owner activity (day-coarse): restarts the mailbox idle expiry."""

    async def delete_mailbox(self, rid: bytes) -> bool:
        """Delete a mailbox and everything it holds at once. Returns False if absent."""

    async def deposit(
        self,
        sid: bytes,
        eid: bytes,
        flags: int,
        ct: bytes,
        fc: bytes | None,
        now: int,
        *,
        cap_hash: bytes | None = None,
        handle: bytes | None = None,
        attachments: int = 0,
        pow_bits: int = 0,
    ) -> DepositOutcome:
        """Durably append an envelope to the mailbox whose send id is ``sid``.

        By kind, in the same atomic step as the insert: ``open`` ignores the keyword
        arguments; ``pair`` requires ``cap_hash`` to be registered; ``addr`` requires a
        ``handle`` (stored with the envelope), checks ``len(ct)`` and ``attachments`` (the
        number of referenced attachments) against its boundaries, requires that its
        proof-of-work difficulty is at most ``pow_bits`` (what the caller verified), refuses
        banned handles, and counts the request against its daily allowance (UTC day
        ``now // 86400``) -- then the duplicate check and the mailbox quota as for any kind.

        Raises:
            MailboxNotFound: no mailbox has send id ``sid``; or (pair) the capability is
                missing or unknown; or (addr) the handle is banned.
            WrongKind: (addr) ``handle`` is None.
            BoundaryExceeded: (addr) too large, or attachments where none are accepted.
            PowRequired: (addr) the address asks for more than ``pow_bits``.
            QuotaExceeded: the mailbox is at its count or byte quota, or (addr) at its
                daily allowance.
        """

    async def fetch(
        self, rid: bytes, after_seq: int, limit: int, max_bytes: int, now: int
    ) -> list[StoredEnvelope]:
        """Return up to ``limit`` unexpired envelopes with ``seq > after_seq``, oldest first.

        Stops before the total ciphertext would exceed ``max_bytes`` (but always returns at
        least one envelope if one is available). An unknown mailbox yields ``[]``.
        """

    async def ack(self, rid: bytes, seqs: Sequence[int]) -> int:
        """Delete the given envelopes; unknown seqs are ignored. Returns how many were deleted."""

    async def purge_expired(self, now: int) -> int:
        """Delete expired envelopes, dedupe records and idle mailboxes. Returns a count."""

    async def put_challenge(self, nonce: bytes, binding: bytes, expires_at: int) -> None:
        """Remember a single-use challenge (HTTP owner commands) until ``expires_at``."""

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        """Atomically consume a challenge: its binding if it existed and had not expired."""

    async def count_envelopes(self) -> int:
        """Total stored envelopes across all mailboxes (an aggregate for metrics only)."""

    async def put_prekeys(
        self,
        rid: bytes,
        static: bytes | None,
        items: Sequence[bytes],
        replace: bool,
        max_items: int,
        now: int,
    ) -> tuple[int, bool]:
        """Update the prekey material of mailbox ``rid`` in one atomic step.

        If ``replace``, every stored one-time item is deleted first; a ``static`` part
        replaces the stored one; ``items`` are appended after the stored ones (FIFO).

        Returns:
            ``(left, has_static)``: one-time items now held, and whether a static part is.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            QuotaExceeded: ``items`` is not empty and the mailbox would hold more than
                ``max_items`` one-time items; nothing changed.
        """

    async def prekey_count(self, rid: bytes, now: int) -> tuple[int, bool]:
        """Return ``(one-time items held, static part held)`` of mailbox ``rid``.

        An unknown or idle-expired mailbox yields ``(0, False)``.
        """

    async def take_prekeys(
        self, sid: bytes, now: int, per_hour: int
    ) -> tuple[bytes, bytes | None] | None:
        """Hand out the prekey bundle of the mailbox whose send id is ``sid``.

        Atomically: if fewer than ``per_hour`` one-time items were handed out for this
        mailbox in the hour ``now // 3600``, the oldest one-time item (if any) is removed and
        returned and counted; otherwise none is.

        Returns:
            ``(static, item or None)``, or None if no live mailbox has send id ``sid`` or it
            holds no static part (nothing is then consumed or counted).
        """

    async def set_caps(
        self,
        rid: bytes,
        add: Sequence[bytes],
        remove: Sequence[bytes],
        max_caps: int,
        now: int,
    ) -> int:
        """Remove, then add capability hashes of the ``pair`` mailbox ``rid``, atomically.

        Returns:
            The number of capability hashes now registered.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: the mailbox is not of kind ``pair``.
            QuotaExceeded: more than ``max_caps`` would be registered; nothing changed.
        """

    async def set_boundaries(self, rid: bytes, boundaries: Boundaries, now: int) -> None:
        """Replace the boundaries of the ``addr`` mailbox ``rid``.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: the mailbox is not of kind ``addr``.
        """

    async def set_bans(
        self,
        rid: bytes,
        ban: Sequence[bytes],
        unban: Sequence[bytes],
        max_bans: int,
        now: int,
    ) -> int:
        """Lift ``unban``, then ban the handles ``ban`` of the ``addr`` mailbox ``rid``.

        Returns:
            The number of banned handles.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: the mailbox is not of kind ``addr``.
            QuotaExceeded: more than ``max_bans`` would be banned; nothing changed.
        """

    async def mailbox_info(self, rid: bytes, now: int) -> MailboxSnapshot | None:
        """Return everything stored for the live mailbox ``rid``, or None if there is none."""


@dataclass(frozen=True, slots=True)
class WakeEvent:
    """A notification for the process(es) holding a subscription to ``rid``.

    ``stored``: envelope ``seq`` was stored (``env`` is set when the event is local, so the
    subscriber can push without reading storage). ``online``: an online-only envelope to push
    now or drop (``env`` always set, ``seq`` 0). ``deleted``: the mailbox is gone.
    """

    kind: Literal["stored", "online", "deleted"]
    rid: bytes
    seq: int = 0
    env: StoredEnvelope | None = None


WakeCallback = Callable[[WakeEvent], None]


class Wakeups(Protocol):
    """Delivers :class:`WakeEvent` to subscriptions, within one process or across several."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def listen(self, rid: bytes, callback: WakeCallback) -> None:
        """Call ``callback`` (on the event loop) for every event about ``rid``."""

    def unlisten(self, rid: bytes, callback: WakeCallback) -> None: ...

    async def publish(self, event: WakeEvent) -> None:
        """Deliver ``event`` to local listeners at once and to other processes if any."""
