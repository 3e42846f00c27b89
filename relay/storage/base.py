"""The storage interface every relay backend implements (SQLite, Redis).

The interface is split by concern into narrow protocols (:class:`MailboxStore`,
:class:`EnvelopeQueue`, :class:`ChallengeStore`, :class:`PrekeyStore`, :class:`ConsentStore`,
:class:`FrankingKeyStore`, :class:`ModerationStore`, :class:`StoreLifecycle`); a component
types against the narrowest one it uses, and :class:`EnvelopeStore` is their intersection,
what a backend implements. The docstrings here are the contract: backends do not repeat
them. Errors live in :mod:`relay.storage.errors`, values in :mod:`relay.storage.records`;
both are re-exported here.

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
* Franking and reports (protocol.md §4.11, revision 4): a deposit may carry a relay
  franking stamp (tag and context), stored with the envelope in the same atomic step and
  handed out by ``fetch``; the stamp names the mailbox kind it was computed for, and a
  mailbox of another kind refuses it (:class:`StampMismatch`) without storing anything.
  A suspended mailbox answers every sender-side operation (deposit, bundle, boundaries,
  online resolution) like a mailbox that does not exist; its owner still reaches it.
  Franking keys, reports and the audit log are not per mailbox: they are shared by every
  relay process of a deployment. ``insert_report`` detects a duplicate id and counts the
  daily allowance of the filing mailbox in one atomic step with the insert and its audit
  entry; ``resolve_report`` changes an open report once, atomically with its audit entry;
  the audit log is append-only (no method updates or deletes an entry). ``purge_expired``
  also destroys franking keys ``report_window_s`` after their retirement, reports
  ``report_retention_s`` after their creation and audit entries ``audit_retention_s`` after
  theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clientlib.wire.frames import Boundaries, StoredEnvelope
from relay.storage.errors import (
    BoundaryExceeded,
    DuplicateReport,
    IdCollision,
    MailboxNotFound,
    PowRequired,
    QuotaExceeded,
    ReportAlreadyResolved,
    ReportNotFound,
    StampMismatch,
    StorageError,
    StorageFull,
    StorageUnavailable,
    WrongKind,
)
from relay.storage.records import (
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    AuditRecord,
    DepositOutcome,
    FrankingKey,
    MailboxRecord,
    MailboxSnapshot,
    RelayStamp,
    ReportRecord,
    ReportResolution,
    StoreGauges,
    StoreLimits,
    WakeCallback,
    WakeEvent,
)

__all__ = [
    "SECONDS_PER_DAY",
    "SECONDS_PER_HOUR",
    "AuditRecord",
    "BoundaryExceeded",
    "ChallengeStore",
    "ConsentStore",
    "DepositOutcome",
    "DuplicateReport",
    "EnvelopeQueue",
    "EnvelopeStore",
    "FrankingKey",
    "FrankingKeyStore",
    "IdCollision",
    "MailboxNotFound",
    "MailboxRecord",
    "MailboxSnapshot",
    "MailboxStore",
    "ModerationStore",
    "PowRequired",
    "PrekeyStore",
    "QuotaExceeded",
    "RelayStamp",
    "ReportAlreadyResolved",
    "ReportNotFound",
    "ReportRecord",
    "ReportResolution",
    "StampMismatch",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "StoreGauges",
    "StoreLifecycle",
    "StoreLimits",
    "WakeCallback",
    "WakeEvent",
    "Wakeups",
    "WrongKind",
]


class StoreLifecycle(Protocol):
    """Opening, closing and health of a store, and its background expiry.

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

    def space_exhausted(self) -> bool:
        """Whether the store ran out of space and has not got room back: the service then
        refuses what adds data (``STORAGE_FULL``) and lets owners free space, and ``/readyz``
        says so. Cheap (no round trip). SQLite: see :mod:`relay.storage.sqlite.reserve`;
        Redis refuses writes at ``maxmemory`` itself and answers False."""

    async def purge_expired(self, now: int) -> int:
        """Delete expired envelopes, dedupe records and idle mailboxes, and destroy franking
        keys, reports and audit entries past their retention. Returns a count.

        The cost is proportional to what is due, not to what is stored (an index of
        deadlines), and the work is done in small steps that let deposits through between
        them. Where several relay processes share a store, one sweeps at a time (a lease);
        the others return 0 at once.
        """

    async def gauges(self) -> StoreGauges:
        """The store's aggregates, from counters the writes maintain in their own atomic
        step: one read whatever the number of mailboxes and envelopes (never a scan)."""


class MailboxStore(Protocol):
    """Mailbox records: creation, lookup by either id, owner activity, deletion.

    Every method may raise :class:`StorageUnavailable` or :class:`StorageFull` in addition
    to the errors listed.
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

    async def mailbox_info(self, rid: bytes, now: int) -> MailboxSnapshot | None:
        """Return everything stored for the live mailbox ``rid``, or None if there is none."""


class EnvelopeQueue(Protocol):
    """The per-mailbox FIFO of envelopes: deposit, fetch, ack.

    Every method may raise :class:`StorageUnavailable` or :class:`StorageFull` in addition
    to the errors listed.
    """

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
        att_cap_hash: bytes | None = None,
        pow_bits: int = 0,
        stamp: RelayStamp | None = None,
        kind: str | None = None,
        ttl: int | None = None,
        rc: bytes | None = None,
    ) -> DepositOutcome:
        """Durably append an envelope to the mailbox whose send id is ``sid``.

        ``kind`` (revision 9, group fan-out): the kind the mailbox must have; any other kind
        is refused like a stamp for another kind (:class:`StampMismatch`, nothing stored).
        ``stamp.kind`` takes its place when a stamp is given.

        By kind, in the same atomic step as the insert: ``open`` ignores the keyword
        arguments; ``pair`` requires ``cap_hash`` to be registered and, when ``attachments``
        > 0, ``att_cap_hash`` too (the attachment capability, revision 8); ``addr`` requires a
        ``handle`` (stored with the envelope), checks ``len(ct)`` and ``attachments`` (the
        number of referenced attachments) against its boundaries, requires that its
        proof-of-work difficulty is at most ``pow_bits`` (what the caller verified), refuses
        banned handles, and counts the request against its daily allowance (UTC day
        ``now // 86400``) -- then the duplicate check and the mailbox quota as for any kind.
        ``stamp`` (the relay franking tag and context) is stored with the envelope and
        returned by ``fetch`` as ``ft``/``fx``; a duplicate keeps the first one's. ``ttl``:
        the envelope expires ``min(ttl, envelope_ttl_s)`` seconds after ``now`` (default:
        ``envelope_ttl_s``), on read and in the sweep alike (protocol.md §5.7). ``rc``: the
        recall hash (protocol.md §5.10), kept in the envelope's dedupe record for
        :meth:`recall`; a duplicate keeps the first one's.

        Raises:
            MailboxNotFound: no mailbox has send id ``sid``, or it is suspended; or (pair)
                the capability is missing or unknown; or (addr) the handle is banned.
            StampMismatch: ``stamp.kind`` is not the mailbox's kind (checked after the
                duplicate check; nothing stored).
            WrongKind: (addr) ``handle`` is None.
            BoundaryExceeded: (addr) too large, or attachments where none are accepted;
                (pair) attachments without a registered ``att_cap_hash``.
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

    async def recall(self, sid: bytes, eid: bytes, rc: bytes, now: int) -> bool:
        """Delete envelope ``eid`` of the mailbox with send id ``sid`` if it is still stored
        and its dedupe record (within the dedupe window) carries the recall hash ``rc``
        (compared in constant time); the record then keeps no recall hash (protocol.md
        §5.10). Returns whether an envelope was deleted; otherwise nothing changed (unknown
        or idle-expired mailbox, unknown eid, no or another hash, acknowledged already)."""

    async def count_envelopes(self) -> int:
        """Total stored envelopes across all mailboxes (an aggregate for metrics only; the
        same as ``gauges().envelopes``, read in O(1))."""


class ChallengeStore(Protocol):
    """Single-use challenges of HTTP owner commands.

    Every method may raise :class:`StorageUnavailable` or :class:`StorageFull` in addition
    to the errors listed.
    """

    async def put_challenge(
        self, nonce: bytes, binding: bytes, expires_at: int, *, frees: bool = False
    ) -> None:
        """Remember a single-use challenge (HTTP owner commands) until ``expires_at``.

        ``frees``: the challenge is for an operation that frees space (``fetch``, ``delete``):
        a store out of space takes it all the same, within a small bound of its own, so that
        owners can drain it (Redis at ``maxmemory``; SQLite has its reserve for every write).
        """

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        """Atomically consume a challenge: its binding if it existed and had not expired."""


class PrekeyStore(Protocol):
    """Prekey hosting (protocol.md §4.7).

    Every method may raise :class:`StorageUnavailable` or :class:`StorageFull` in addition
    to the errors listed.
    """

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


class ConsentStore(Protocol):
    """Consent state of a mailbox (protocol.md §4.8-§4.10): capabilities, boundaries, bans.

    Every method may raise :class:`StorageUnavailable` or :class:`StorageFull` in addition
    to the errors listed.
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


class FrankingKeyStore(Protocol):
    """Relay franking keys (protocol.md §4.11), shared by every relay process.

    Every method may raise :class:`StorageUnavailable` or :class:`StorageFull` in addition
    to the errors listed.
    """

    async def franking_keys(self) -> list[FrankingKey]:
        """Every stored franking key, by increasing ``kid``."""

    async def add_franking_key(self, key: FrankingKey) -> FrankingKey:
        """Store ``key`` unless a key with its ``kid`` exists; return the stored one (so that
        concurrent rotations on several processes agree on one key per ``kid``)."""


class ModerationStore(Protocol):
    """Reports, the audit log and suspensions (protocol.md §4.11, §8).

    Every method may raise :class:`StorageUnavailable` or :class:`StorageFull` in addition
    to the errors listed.
    """

    async def set_suspended(self, sid: bytes, suspended: bool, now: int) -> bool:
        """Suspend (or lift the suspension of) the live mailbox whose send id is ``sid``.

        A suspended mailbox answers deposits, ``take_prekeys``, ``get_boundaries`` and
        ``resolve_online`` like a mailbox that does not exist; owner operations still work.

        Returns:
            False if no live mailbox has send id ``sid``.
        """

    async def insert_report(
        self, report: ReportRecord, audit: AuditRecord, *, max_per_day: int
    ) -> None:
        """Store a verified open report and append ``audit``, atomically.

        Raises:
            DuplicateReport: a report with ``report.id`` is stored (checked first).
            QuotaExceeded: ``max_per_day`` reports filed by ``report.sid`` are stored with a
                creation time on the UTC day of ``report.created``.
        """

    async def get_report(self, report_id: bytes) -> ReportRecord | None:
        """Return the report, or None."""

    async def list_reports(self, status: str | None, limit: int) -> list[ReportRecord]:
        """Up to ``limit`` reports of ``status`` (``open``, ``resolved``, None: any): open
        reports oldest first (the queue order), otherwise newest first."""

    async def resolve_report(
        self, report_id: bytes, resolution: ReportResolution, audit: AuditRecord
    ) -> ReportRecord:
        """Resolve an open report and append ``audit``, atomically; return the result.

        Raises:
            ReportNotFound: no report has this id.
            ReportAlreadyResolved: it was resolved before (nothing changed).
        """

    async def append_audit(self, entry: AuditRecord) -> int:
        """Append an audit entry; returns its sequence number (increasing from 1)."""

    async def list_audit(self, limit: int) -> list[AuditRecord]:
        """The latest ``limit`` audit entries, newest first."""


class PushStore(Protocol):
    """Push endpoints of mailboxes (protocol.md §28): kept in the form registered, deleted
    with the mailbox (and with its expiry)."""

    async def set_push(self, rid: bytes, endpoint: tuple[str, bytes] | None, now: int) -> None:
        """Register ``endpoint`` ``(url, token)`` for live mailbox ``rid`` (replacing any), or
        with None forget it.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
        """

    async def get_push(self, rid: bytes, now: int) -> tuple[str, bytes] | None:
        """The endpoint ``(url, token)`` of live mailbox ``rid``, or None."""


class EnvelopeStore(
    StoreLifecycle,
    MailboxStore,
    EnvelopeQueue,
    ChallengeStore,
    PrekeyStore,
    ConsentStore,
    FrankingKeyStore,
    ModerationStore,
    PushStore,
    Protocol,
):
    """Durable storage of mailboxes and envelopes: every concern at once (what a backend
    implements, and what the service that uses them all types against)."""


class Wakeups(Protocol):
    """Delivers :class:`WakeEvent` to subscriptions, within one process or across several."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def listen(self, rid: bytes, callback: WakeCallback) -> None:
        """Call ``callback`` (on the event loop) for every event about ``rid``."""

    def unlisten(self, rid: bytes, callback: WakeCallback) -> None: ...

    async def publish(self, event: WakeEvent) -> None:
        """Deliver ``event`` to local listeners at once and to other processes if any."""
