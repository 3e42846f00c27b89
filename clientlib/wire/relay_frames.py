"""The frames the relay sends to clients (protocol.md §3, §4).

They are named after what happened (``ChallengeIssued``, ``EnvelopeDelivered``); the ``t``
field names the frame on the wire. Client-to-relay frames have a separate registry
(:mod:`clientlib.wire.client_frames`), so the same ``t`` may mean a different frame there.
"""

from __future__ import annotations

from typing import ClassVar

from clientlib.wire.codec import (
    Bin,
    Int,
    ListOf,
    Str,
    Struct,
    StructField,
    decode_map,
    wire,
    wire_struct,
)
from clientlib.wire.codes import ErrorCode
from clientlib.wire.limits import (
    CHALLENGE_SIZE,
    ED25519_PUBLIC_KEY_SIZE,
    MAILBOX_KINDS,
    MAX_FANOUT,
    MAX_FETCH_BATCH,
    MAX_POW_BITS,
    MAX_RELAY_FRAME_SIZE,
    POW_NONCE_SIZE,
    REPORT_ACTIONS,
    REPORT_STATUSES,
)
from clientlib.wire.shared import (
    _COUNT,
    _DAY,
    _MAILBOX_ID,
    _PREKEY_ITEM,
    _PREKEY_STATIC,
    _REPORT_ID,
    _REQ_ID,
    Boundaries,
    StoredEnvelope,
    _dispatch,
)
from clientlib.wire.version import SUPPORTED_VERSIONS, VersionRange

__all__ = [
    "BlobCreated",
    "BlobOffset",
    "BoundariesIssued",
    "BundleIssued",
    "ChallengeIssued",
    "Drained",
    "EnvelopeDelivered",
    "EnvelopesFetched",
    "ErrorReply",
    "FanoutDone",
    "FanoutRefusal",
    "Hello",
    "MailboxCreated",
    "MailboxInfo",
    "ModerationKeys",
    "ModeratorKeyEntry",
    "Ok",
    "PowIssued",
    "PreKeysStored",
    "RelayFrame",
    "RelayLimits",
    "ReportAccepted",
    "ReportStatus",
    "RouteKeyEntry",
    "RouteKeysIssued",
    "Routed",
    "decode_relay_frame",
]


class RelayFrame(Struct):
    """Base of frames the relay sends."""

    __slots__ = ()


@wire_struct
class RelayLimits(Struct):
    """The limits a relay applies, announced in :class:`Hello`."""

    max_frame: int = wire(Int(), key="frame")
    max_envelope: int = wire(Int(), key="env")
    max_subscriptions: int = wire(Int(), key="subs")
    challenge_ttl_s: int = wire(Int(), key="chal_ttl")
    envelope_ttl_s: int = wire(Int(), key="ttl")
    push_window: int = wire(Int(), key="window")


@wire_struct
class Hello(RelayFrame):
    """First frame on every WebSocket: the relay's version range and limits."""

    TYPE: ClassVar[str] = "hello"
    min: int = wire(Int(1, 255))
    max: int = wire(Int(1, 255))
    limits: RelayLimits = wire(StructField(RelayLimits), key="lim")


@wire_struct
class Ok(RelayFrame):
    """Request ``id`` succeeded (deposit stored or pushed, ack applied, subscribed, ...)."""

    TYPE: ClassVar[str] = "ok"
    id: int = wire(_REQ_ID)


@wire_struct
class FanoutRefusal(Struct):
    """One refused entry of a ``fan`` frame: its index ``i`` and the error ``e`` a ``dep`` to
    that entry would have got (``AUTH``, ``QUOTA``, ``UNAVAILABLE``, ``STORAGE_FULL``)."""

    i: int = wire(Int(0, MAX_FANOUT - 1))
    e: str = wire(Str([c.value for c in ErrorCode]))


@wire_struct
class FanoutDone(RelayFrame):
    """Reply to ``fan`` (protocol.md §26.1): ``n`` entries stored (or already stored: a retry),
    ``bad`` the refused ones, by increasing index."""

    TYPE: ClassVar[str] = "fanned"
    id: int = wire(_REQ_ID)
    n: int = wire(Int(0, MAX_FANOUT))
    bad: tuple[FanoutRefusal, ...] = wire(ListOf(StructField(FanoutRefusal), MAX_FANOUT))


@wire_struct
class ErrorReply(RelayFrame):
    """Request ``id`` failed with ``code`` (``id`` absent when the frame could not be parsed)."""

    TYPE: ClassVar[str] = "err"
    code: str = wire(Str([c.value for c in ErrorCode]))
    id: int | None = wire(_REQ_ID, default=None)


@wire_struct
class ChallengeIssued(RelayFrame):
    """A single-use challenge for the operation requested by ``id``."""

    TYPE: ClassVar[str] = "chal"
    id: int = wire(_REQ_ID)
    nonce: bytes = wire(Bin(CHALLENGE_SIZE))


@wire_struct
class MailboxCreated(RelayFrame):
    """A new mailbox: ``rid`` for its owner, ``sid`` to give to senders."""

    TYPE: ClassVar[str] = "created"
    id: int = wire(_REQ_ID)
    rid: bytes = wire(_MAILBOX_ID)
    sid: bytes = wire(_MAILBOX_ID)


@wire_struct
class EnvelopeDelivered(RelayFrame):
    """An envelope pushed to a subscribed owner; ``env`` fields inlined with ``rid``."""

    TYPE: ClassVar[str] = "env"
    rid: bytes = wire(_MAILBOX_ID)
    env: StoredEnvelope = wire(StructField(StoredEnvelope))


@wire_struct
class EnvelopesFetched(RelayFrame):
    """Reply to an owner ``fetch``: oldest-first envelopes; ``more`` if others wait."""

    TYPE: ClassVar[str] = "envs"
    id: int = wire(_REQ_ID)
    envs: tuple[StoredEnvelope, ...] = wire(ListOf(StructField(StoredEnvelope), MAX_FETCH_BATCH))
    more: int = wire(Int(0, 1))


@wire_struct
class Drained(RelayFrame):
    """Every envelope stored for ``rid`` when the subscription began has now been pushed."""

    TYPE: ClassVar[str] = "drained"
    rid: bytes = wire(_MAILBOX_ID)


@wire_struct
class PreKeysStored(RelayFrame):
    """Reply to a ``keys`` owner command: what the mailbox now holds.

    ``left`` is the number of one-time items held, ``static`` 1 if a static part is held.
    """

    TYPE: ClassVar[str] = "keys"
    id: int = wire(_REQ_ID)
    left: int = wire(Int(0, 2**32 - 1))
    static: int = wire(Int(0, 1))


@wire_struct
class BundleIssued(RelayFrame):
    """Reply to :class:`FetchBundle`: the static prekey part and, if one was handed out, a
    one-time item (absent when none is left or the mailbox's hourly allowance is used up);
    ``bnd``: the boundaries, when the mailbox is a contact address (revision 3)."""

    TYPE: ClassVar[str] = "bundle"
    id: int = wire(_REQ_ID)
    static: bytes = wire(_PREKEY_STATIC)
    otk: bytes | None = wire(_PREKEY_ITEM, default=None)
    bnd: Boundaries | None = wire(StructField(Boundaries), default=None)


@wire_struct
class BoundariesIssued(RelayFrame):
    """Reply to :class:`GetBoundaries`: what the contact address accepts."""

    TYPE: ClassVar[str] = "bnd"
    id: int = wire(_REQ_ID)
    bnd: Boundaries = wire(StructField(Boundaries))


@wire_struct
class PowIssued(RelayFrame):
    """Reply to :class:`GetPow`: a single-use ``nonce``, the difficulty ``bits`` and the
    expiry ``exp`` (seconds since the epoch) of the nonce."""

    TYPE: ClassVar[str] = "pow"
    id: int = wire(_REQ_ID)
    nonce: bytes = wire(Bin(POW_NONCE_SIZE))
    bits: int = wire(Int(0, MAX_POW_BITS))
    exp: int = wire(Int())


#: At most this many moderator keys in one :class:`ModerationKeys` reply (newest first).
MAX_MODERATION_KEYS = 16


@wire_struct
class ModeratorKeyEntry(Struct):
    """One moderator key: the franking key id ``kid`` and ``key`` = ``M_kid`` (§15.5.3)."""

    kid: int = wire(Int(0, 2**32 - 1))
    key: bytes = wire(Bin(32))


@wire_struct
class ModerationKeys(RelayFrame):
    """Reply to ``mkeys?``: the relay's current moderator key first, then each retired key
    still inside its report window, newest first (at most 16; protocol.md §4.11,
    revision 5)."""

    TYPE: ClassVar[str] = "mkeys"
    id: int = wire(_REQ_ID)
    keys: tuple[ModeratorKeyEntry, ...] = wire(
        ListOf(StructField(ModeratorKeyEntry), MAX_MODERATION_KEYS)
    )


@wire_struct
class MailboxInfo(RelayFrame):
    """Reply to an ``info`` owner command: every datum the relay keeps for the mailbox
    (protocol.md §4.10; revision 3).

    Days are days since the epoch (UTC), hours hours since the epoch. ``oldest_ts`` is the
    receive time of the oldest stored envelope rounded down to its day; ``prekey_hour`` /
    ``prekeys_handed`` the hour of the latest one-time prekey handout and how many items were
    handed out in it; ``requests_day`` / ``requests`` the day of the latest stored contact
    request and how many were stored on it (``requests_today`` is ``requests`` if that day is
    today, else 0). Optional fields are absent when the relay keeps no such datum.
    ``suspended`` is 1 when a moderator suspended the mailbox (revision 4; absent otherwise).
    """

    TYPE: ClassVar[str] = "info"
    id: int = wire(_REQ_ID)
    kind: str = wire(Str(MAILBOX_KINDS))
    sid: bytes = wire(_MAILBOX_ID)
    owner_key: bytes = wire(Bin(ED25519_PUBLIC_KEY_SIZE))
    created_day: int = wire(_DAY)
    active_day: int = wire(_DAY)
    last_seq: int = wire(_COUNT)
    envelopes: int = wire(_COUNT)
    stored_bytes: int = wire(_COUNT, key="bytes")
    oldest_ts: int | None = wire(_COUNT)
    dedupe_records: int = wire(_COUNT)
    prekeys_left: int = wire(_COUNT)
    prekey_static: int = wire(Int(0, 1))
    prekey_hour: int | None = wire(_COUNT)
    prekeys_handed: int = wire(_COUNT)
    caps: int = wire(_COUNT)
    bnd: Boundaries | None = wire(StructField(Boundaries))
    bans: int = wire(_COUNT)
    requests_day: int | None = wire(_DAY)
    requests: int = wire(_COUNT)
    requests_today: int = wire(_COUNT)
    suspended: int | None = wire(Int(1, 1), default=None)


@wire_struct
class ReportAccepted(RelayFrame):
    """Reply to a ``report`` owner command: the report verified and is stored under the
    16-byte id ``report`` (protocol.md §4.11; revision 4)."""

    TYPE: ClassVar[str] = "reported"
    id: int = wire(_REQ_ID)
    report: bytes = wire(_REPORT_ID)


@wire_struct
class ReportStatus(RelayFrame):
    """Reply to an ``rstat`` owner command: the state of a report the mailbox filed.

    ``status`` is ``open`` or ``resolved``; ``action`` what the moderator did (``none``,
    ``revoke``, ``suspend``; absent while open); ``ts`` when it was resolved, or filed while
    open (seconds since the epoch). Revision 4.
    """

    TYPE: ClassVar[str] = "rstat"
    id: int = wire(_REQ_ID)
    report: bytes = wire(_REPORT_ID)
    status: str = wire(Str(REPORT_STATUSES))
    action: str | None = wire(Str(REPORT_ACTIONS))
    ts: int = wire(Int())


@wire_struct
class BlobCreated(RelayFrame):
    """Reply to :class:`~clientlib.wire.client_frames.CreateBlob` (protocol.md §5.9): the
    random ``blob`` id, the upload token ``ut`` (needed to send and resume), the read token
    ``rt`` (needed to download) and the expiry ``exp`` (seconds since the epoch)."""

    TYPE: ClassVar[str] = "blob"
    id: int = wire(_REQ_ID)
    blob: bytes = wire(Bin(16))
    ut: bytes = wire(Bin(32))
    rt: bytes = wire(Bin(32))
    exp: int = wire(Int())


@wire_struct
class BlobOffset(RelayFrame):
    """Reply to an upload request (protocol.md §5.9): ``off`` bytes are durably stored;
    ``done`` 1 once all of them are and the blob can be downloaded."""

    TYPE: ClassVar[str] = "boff"
    off: int = wire(Int(0, 2**40))
    done: int = wire(Int(0, 1))


#: Route keys one relay publishes at a time: the current one and the one before it (the
#: overlap window of a rotation, protocol.md §27.3), with room for an operator's overlap.
MAX_ROUTE_KEYS = 4


@wire_struct
class RouteKeyEntry(Struct):
    """One route key: id ``kid``, X25519 public ``key``, end of validity ``exp`` (seconds
    since the epoch) and ``sig``, the relay identity's Ed25519 signature (§27.3)."""

    kid: int = wire(Int(0, 2**32 - 1))
    key: bytes = wire(Bin(32))
    exp: int = wire(Int(0, 2**63 - 1))
    sig: bytes = wire(Bin(64))


@wire_struct
class RouteKeysIssued(RelayFrame):
    """Reply to ``rkeys?`` (protocol.md §27.3, revision 11): the relay identity key ``ri``,
    its route keys (newest first), whether it forwards for clients (``fwd``) and the
    proof-of-work bits its ``route`` frames need (``fpow``)."""

    TYPE: ClassVar[str] = "rkeys"
    id: int = wire(_REQ_ID)
    ri: bytes = wire(Bin(32))
    keys: tuple[RouteKeyEntry, ...] = wire(ListOf(StructField(RouteKeyEntry), MAX_ROUTE_KEYS))
    fwd: int = wire(Int(0, 1))
    fpow: int = wire(Int(0, MAX_POW_BITS))


@wire_struct
class Routed(RelayFrame):
    """Reply to ``route`` (and the destination's answer to a forwarded packet): ``ans``, the
    destination's reply frame sealed for the client (§27.3)."""

    TYPE: ClassVar[str] = "routed"
    id: int = wire(_REQ_ID)
    ans: bytes = wire(Bin(min=24 + 16, max=MAX_RELAY_FRAME_SIZE))


_RELAY_FRAMES: dict[str, type[RelayFrame]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Ok,
        FanoutDone,
        ErrorReply,
        ChallengeIssued,
        MailboxCreated,
        EnvelopeDelivered,
        EnvelopesFetched,
        Drained,
        PreKeysStored,
        BundleIssued,
        BoundariesIssued,
        PowIssued,
        MailboxInfo,
        ModerationKeys,
        ReportAccepted,
        ReportStatus,
        BlobCreated,
        BlobOffset,
        RouteKeysIssued,
        Routed,
    )
}


def decode_relay_frame(
    data: bytes,
    *,
    max_size: int = MAX_RELAY_FRAME_SIZE,
    versions: VersionRange = SUPPORTED_VERSIONS,
) -> tuple[int, RelayFrame]:
    """Decode a frame sent by the relay (used by clients).

    Raises:
        WireError: with ``code`` MALFORMED, VERSION or TOO_LARGE.
    """
    version, fields = decode_map(data, max_size=max_size, versions=versions)
    frame: RelayFrame = _dispatch(_RELAY_FRAMES, fields)
    return version, frame
