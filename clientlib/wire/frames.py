"""Every v1 frame, as immutable value types (protocol.md §3 and §4).

Frames sent by clients are commands, named as imperatives (``Deposit``, ``Ack``). Frames sent
by the relay are named after what happened (``ChallengeIssued``, ``EnvelopeDelivered``). The
``t`` field names the frame on the wire; the two directions have separate registries, so the
same ``t`` may mean different frames in each direction.

The signed body of an owner command (``OwnerCommand``) is itself a versioned structure; the
signature covers exactly the bytes received (``OWNER_COMMAND_CONTEXT || body``), never a
re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from clientlib.errors import WireError
from clientlib.wire.codec import (
    Bin,
    Field,
    Int,
    IntIn,
    ListOf,
    Str,
    Struct,
    StructField,
    Text,
    decode_map,
    wire,
    wire_struct,
)
from clientlib.wire.codes import ErrorCode
from clientlib.wire.limits import (
    ATTACHMENT_ID_SIZE,
    BOUNDARY_SIZES,
    CAPABILITY_HASH_SIZE,
    CAPABILITY_SIZE,
    CHALLENGE_SIZE,
    ED25519_PUBLIC_KEY_SIZE,
    ED25519_SIGNATURE_SIZE,
    ENVELOPE_ID_SIZE,
    FRANKING_COMMITMENT_SIZE,
    FRANKING_KEY_SIZE,
    FRANKING_TAG_SIZE,
    HANDLE_SIZE,
    KIND_ADDRESS,
    MAILBOX_ID_SIZE,
    MAILBOX_KINDS,
    MAX_ACK_BATCH,
    MAX_ATTACHMENT_REFS,
    MAX_BANS_PER_COMMAND,
    MAX_CAPS_PER_COMMAND,
    MAX_ENVELOPE_SIZE,
    MAX_FETCH_BATCH,
    MAX_FRAME_SIZE,
    MAX_FRANKING_CONTEXT_SIZE,
    MAX_OWNER_COMMAND_SIZE,
    MAX_POW_BITS,
    MAX_PREKEY_ITEM_SIZE,
    MAX_PREKEY_STATIC_SIZE,
    MAX_PREKEY_UPLOAD,
    MAX_RELAY_FRAME_SIZE,
    MAX_REPORT_ATTACHMENTS,
    MAX_REPORT_NOTE_BYTES,
    MAX_REPORTED_MESSAGE_SIZE,
    MAX_REQUEST_ID,
    MAX_REQUESTS_PER_DAY,
    POW_NONCE_SIZE,
    REPORT_ACTIONS,
    REPORT_ID_SIZE,
    REPORT_REASONS,
    REPORT_STATUSES,
)
from clientlib.wire.version import SUPPORTED_VERSIONS, VersionRange

__all__ = [
    "DEFAULT_BOUNDARIES",
    "OP_BAN",
    "OP_BOUNDARIES",
    "OP_CAPS",
    "OP_CREATE",
    "OP_DELETE",
    "OP_FETCH",
    "OP_INFO",
    "OP_PREKEYS",
    "OP_REPORT",
    "OP_REPORT_STATUS",
    "OP_SUBSCRIBE",
    "OWNER_OPS",
    "Ack",
    "Boundaries",
    "BoundariesIssued",
    "BundleIssued",
    "ChallengeIssued",
    "ClientFrame",
    "Deposit",
    "Drained",
    "EnvelopeDelivered",
    "EnvelopesFetched",
    "ErrorReply",
    "FetchBundle",
    "GetBoundaries",
    "GetPow",
    "Hello",
    "MailboxCreated",
    "MailboxInfo",
    "Ok",
    "OwnerCommand",
    "PowIssued",
    "PreKeysStored",
    "RelayFrame",
    "RelayLimits",
    "ReportAccepted",
    "ReportStatus",
    "RequestChallenge",
    "SignedOwnerCommand",
    "StoredEnvelope",
    "Unsubscribe",
    "decode_client_frame",
    "decode_owner_command",
    "decode_relay_frame",
]

OP_CREATE = "create"
OP_SUBSCRIBE = "sub"
OP_DELETE = "delete"
OP_FETCH = "fetch"
OP_PREKEYS = "keys"
OP_CAPS = "caps"
OP_BOUNDARIES = "bnd"
OP_BAN = "ban"
OP_INFO = "info"
OP_REPORT = "report"
OP_REPORT_STATUS = "rstat"
OWNER_OPS = (
    OP_CREATE,
    OP_SUBSCRIBE,
    OP_DELETE,
    OP_FETCH,
    OP_PREKEYS,
    OP_CAPS,
    OP_BOUNDARIES,
    OP_BAN,
    OP_INFO,
    OP_REPORT,
    OP_REPORT_STATUS,
)

_REQ_ID = Int(0, MAX_REQUEST_ID)
_MAILBOX_ID = Bin(MAILBOX_ID_SIZE)
_ENVELOPE_ID = Bin(ENVELOPE_ID_SIZE)
_SEQ = Int(1, 2**63 - 1)
_CT = Bin(min=1, max=MAX_ENVELOPE_SIZE)
_FC = Bin(FRANKING_COMMITMENT_SIZE)
_FLAGS = Int(0, 255)
_PREKEY_STATIC = Bin(min=1, max=MAX_PREKEY_STATIC_SIZE)
_PREKEY_ITEM = Bin(min=1, max=MAX_PREKEY_ITEM_SIZE)
_CAP_HASH = Bin(CAPABILITY_HASH_SIZE)
_HANDLE = Bin(HANDLE_SIZE)
_COUNT = Int(0, 2**63 - 1)
_DAY = Int(0, 2**32 - 1)
_FT = Bin(FRANKING_TAG_SIZE)
_FX = Bin(min=1, max=MAX_FRANKING_CONTEXT_SIZE)
_REPORT_ID = Bin(REPORT_ID_SIZE)


@wire_struct
class Boundaries(Struct):
    """What a contact address accepts (protocol.md §4.9; revision 3).

    ``size``: the largest request envelope, one of the buckets 2048..65536; ``att``: 1 if
    requests may reference attachments; ``day``: requests stored per UTC day; ``pow``: the
    proof-of-work difficulty in leading zero bits (0: none).
    """

    size: int = wire(IntIn(BOUNDARY_SIZES))
    att: int = wire(Int(0, 1))
    day: int = wire(Int(1, MAX_REQUESTS_PER_DAY))
    pow: int = wire(Int(0, MAX_POW_BITS))


#: The boundaries of a contact address created without any (max size 4096, no attachments,
#: 100 requests a day, no proof of work).
DEFAULT_BOUNDARIES = Boundaries(size=4096, att=0, day=100, pow=0)


# --- client -> relay -------------------------------------------------------------------------


class ClientFrame(Struct):
    """Base of frames a client sends."""

    __slots__ = ()


@wire_struct
class RequestChallenge(ClientFrame):
    """Ask for a single-use challenge for one owner operation on one mailbox.

    ``rid`` is absent for ``create`` (the mailbox does not exist yet).
    """

    TYPE: ClassVar[str] = "chal"
    id: int = wire(_REQ_ID)
    op: str = wire(Str(OWNER_OPS))
    rid: bytes | None = wire(_MAILBOX_ID, default=None)


@wire_struct
class SignedOwnerCommand(ClientFrame):
    """An owner command: ``cmd`` is an encoded :class:`OwnerCommand`, ``sig`` its signature."""

    TYPE: ClassVar[str] = "own"
    id: int = wire(_REQ_ID)
    cmd: bytes = wire(Bin(min=2, max=MAX_OWNER_COMMAND_SIZE))
    sig: bytes = wire(Bin(ED25519_SIGNATURE_SIZE))


@wire_struct
class Deposit(ClientFrame):
    """Deposit one envelope into the mailbox whose send id is ``sid``.

    Revision 3 (protocol.md §4.8, §4.9): ``cap`` is the send capability a pairwise mailbox
    requires; ``hdl`` (the requester's handle, required by contact addresses), ``att``
    (attachment ids the envelope references), ``pow`` (a relay-issued nonce) and ``pwc`` (the
    proof-of-work counter) are for contact addresses. Fields a mailbox's kind does not use are
    ignored.
    """

    TYPE: ClassVar[str] = "dep"
    id: int = wire(_REQ_ID)
    sid: bytes = wire(_MAILBOX_ID)
    eid: bytes = wire(_ENVELOPE_ID)
    flags: int = wire(_FLAGS)
    ct: bytes = wire(_CT)
    fc: bytes | None = wire(_FC, default=None)
    cap: bytes | None = wire(Bin(CAPABILITY_SIZE), default=None)
    hdl: bytes | None = wire(_HANDLE, default=None)
    att: tuple[bytes, ...] | None = wire(
        ListOf(Bin(ATTACHMENT_ID_SIZE), MAX_ATTACHMENT_REFS), default=None
    )
    pow: bytes | None = wire(Bin(POW_NONCE_SIZE), default=None)
    pwc: int | None = wire(Int(0, 2**64 - 1), default=None)


@wire_struct
class Ack(ClientFrame):
    """Acknowledge (and so delete) envelopes pushed on this connection for mailbox ``rid``."""

    TYPE: ClassVar[str] = "ack"
    id: int = wire(_REQ_ID)
    rid: bytes = wire(_MAILBOX_ID)
    seqs: tuple[int, ...] = wire(ListOf(_SEQ, MAX_ACK_BATCH))


@wire_struct
class Unsubscribe(ClientFrame):
    """Stop pushes for mailbox ``rid`` on this connection."""

    TYPE: ClassVar[str] = "unsub"
    id: int = wire(_REQ_ID)
    rid: bytes = wire(_MAILBOX_ID)


@wire_struct
class FetchBundle(ClientFrame):
    """Ask for the prekey bundle of the mailbox whose send id is ``sid`` (protocol.md §4.7).

    The relay answers :class:`BundleIssued`, consuming one one-time item if it hands one out.
    """

    TYPE: ClassVar[str] = "bundle"
    id: int = wire(_REQ_ID)
    sid: bytes = wire(_MAILBOX_ID)


@wire_struct
class GetBoundaries(ClientFrame):
    """Ask for the boundaries of the contact address whose send id is ``sid`` (§4.9)."""

    TYPE: ClassVar[str] = "bnd?"
    id: int = wire(_REQ_ID)
    sid: bytes = wire(_MAILBOX_ID)


@wire_struct
class GetPow(ClientFrame):
    """Ask for a single-use proof-of-work nonce for the contact address ``sid`` (§4.9)."""

    TYPE: ClassVar[str] = "pow?"
    id: int = wire(_REQ_ID)
    sid: bytes = wire(_MAILBOX_ID)


#: Per operation: the owner command fields (attribute names) it requires, and those it allows.
_OP_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    OP_CREATE: (frozenset({"key"}), frozenset({"kind", "bnd"})),
    OP_SUBSCRIBE: (frozenset({"rid"}), frozenset()),
    OP_DELETE: (frozenset({"rid"}), frozenset()),
    OP_FETCH: (frozenset({"rid"}), frozenset({"ack", "max"})),
    OP_PREKEYS: (frozenset({"rid"}), frozenset({"static", "otk", "replace"})),
    OP_CAPS: (frozenset({"rid"}), frozenset({"add", "remove"})),
    OP_BOUNDARIES: (frozenset({"rid", "bnd"}), frozenset()),
    OP_BAN: (frozenset({"rid"}), frozenset({"hdl", "unban"})),
    OP_INFO: (frozenset({"rid"}), frozenset()),
    OP_REPORT: (
        frozenset({"rid", "msg", "fk", "fc", "ft", "fx", "snd", "rcp", "why"}),
        frozenset({"atts", "note"}),
    ),
    OP_REPORT_STATUS: (frozenset({"rid", "report"}), frozenset()),
}


@dataclass(frozen=True, slots=True)
class OwnerCommand(Struct):
    """The signed body of an owner command (not a frame of its own; no ``t`` field).

    Fields by ``op``: ``create`` needs ``key`` and may carry ``kind`` (default ``open``) and,
    for kind ``addr`` only, ``bnd``; every other operation needs ``rid``; ``fetch`` may carry
    ``ack`` (sequence numbers to delete first) and ``max``; ``keys`` may carry ``static``
    (replaces the stored static prekey part), ``otk`` (one-time items to append) and
    ``replace`` (1: delete every stored one-time item first) -- a ``keys`` command with
    neither ``static`` nor ``otk`` and no ``replace`` is a status query; ``caps`` may carry
    ``add`` and ``remove`` (wire key ``del``: capability hashes, removed first); ``bnd`` needs
    ``bnd``; ``ban`` may carry ``hdl`` (handles to ban) and ``unban`` (lifted first);
    ``info`` carries nothing else.

    Revision 4 (protocol.md §4.11): ``report`` needs ``msg`` (the reported content bytes),
    ``fk``, ``fc``, ``ft``, ``fx`` (franking key, commitment, relay tag and its context, as
    delivered), ``snd`` and ``rcp`` (the sender's and recipient's identity keys) and ``why``
    (one of ``REPORT_REASONS``), and may carry ``atts`` (the attachment plaintexts, in order)
    and ``note``; ``rstat`` needs ``report`` (a report id the mailbox filed).
    """

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("op", "op", Str(OWNER_OPS)),
        Field("nonce", "nonce", Bin(CHALLENGE_SIZE)),
        Field("rid", "rid", _MAILBOX_ID, required=False),
        Field("key", "key", Bin(ED25519_PUBLIC_KEY_SIZE), required=False),
        Field("ack", "ack", ListOf(_SEQ, MAX_ACK_BATCH), required=False),
        Field("max", "max", Int(0, MAX_FETCH_BATCH), required=False),
        Field("static", "static", _PREKEY_STATIC, required=False),
        Field("otk", "otk", ListOf(_PREKEY_ITEM, MAX_PREKEY_UPLOAD), required=False),
        Field("replace", "replace", Int(0, 1), required=False),
        Field("kind", "kind", Str(MAILBOX_KINDS), required=False),
        Field("bnd", "bnd", StructField(Boundaries), required=False),
        Field("add", "add", ListOf(_CAP_HASH, MAX_CAPS_PER_COMMAND), required=False),
        Field("del", "remove", ListOf(_CAP_HASH, MAX_CAPS_PER_COMMAND), required=False),
        Field("hdl", "hdl", ListOf(_HANDLE, MAX_BANS_PER_COMMAND), required=False),
        Field("unban", "unban", ListOf(_HANDLE, MAX_BANS_PER_COMMAND), required=False),
        Field("msg", "msg", Bin(min=0, max=MAX_REPORTED_MESSAGE_SIZE), required=False),
        Field("fk", "fk", Bin(FRANKING_KEY_SIZE), required=False),
        Field("fc", "fc", _FC, required=False),
        Field("ft", "ft", _FT, required=False),
        Field("fx", "fx", _FX, required=False),
        Field("snd", "snd", Bin(ED25519_PUBLIC_KEY_SIZE), required=False),
        Field("rcp", "rcp", Bin(ED25519_PUBLIC_KEY_SIZE), required=False),
        Field(
            "atts",
            "atts",
            ListOf(Bin(min=0, max=MAX_OWNER_COMMAND_SIZE), MAX_REPORT_ATTACHMENTS),
            required=False,
        ),
        Field("why", "why", Str(REPORT_REASONS), required=False),
        Field("note", "note", Text(MAX_REPORT_NOTE_BYTES), required=False),
        Field("report", "report", _REPORT_ID, required=False),
    )
    op: str
    nonce: bytes
    rid: bytes | None = None
    key: bytes | None = None
    ack: tuple[int, ...] | None = None
    max: int | None = None
    static: bytes | None = None
    otk: tuple[bytes, ...] | None = None
    replace: int | None = None
    kind: str | None = None
    bnd: Boundaries | None = None
    add: tuple[bytes, ...] | None = None
    remove: tuple[bytes, ...] | None = None
    hdl: tuple[bytes, ...] | None = None
    unban: tuple[bytes, ...] | None = None
    msg: bytes | None = None
    fk: bytes | None = None
    fc: bytes | None = None
    ft: bytes | None = None
    fx: bytes | None = None
    snd: bytes | None = None
    rcp: bytes | None = None
    atts: tuple[bytes, ...] | None = None
    why: str | None = None
    note: str | None = None
    report: bytes | None = None

    def validate_shape(self) -> None:
        """Check the per-operation field rules.

        Raises:
            WireError: a field is missing or present where ``op`` does not allow it.
        """
        required, allowed = _OP_FIELDS[self.op]
        present = {
            f.attr
            for f in self.SCHEMA
            if f.attr not in ("op", "nonce") and getattr(self, f.attr) is not None
        }
        if not required <= present <= required | allowed:
            raise WireError("owner command fields do not match its operation")
        if self.op == OP_CREATE and self.bnd is not None and self.kind != KIND_ADDRESS:
            raise WireError("boundaries belong to contact addresses only")

    @property
    def is_prekey_query(self) -> bool:
        """True for a ``keys`` command that changes nothing (a status query)."""
        return self.op == OP_PREKEYS and not self.static and not self.otk and not self.replace


_CLIENT_FRAMES: dict[str, type[ClientFrame]] = {
    cls.TYPE: cls
    for cls in (
        RequestChallenge,
        SignedOwnerCommand,
        Deposit,
        Ack,
        Unsubscribe,
        FetchBundle,
        GetBoundaries,
        GetPow,
    )
}


def _dispatch(registry: dict[str, Any], fields: dict[str, Any]) -> Any:
    t = fields.get("t")
    cls = registry.get(t) if type(t) is str else None
    if cls is None:
        raise WireError("unknown frame type")
    return cls.from_map(fields)


def decode_client_frame(
    data: bytes, *, max_size: int = MAX_FRAME_SIZE, versions: VersionRange = SUPPORTED_VERSIONS
) -> tuple[int, ClientFrame]:
    """Decode a frame sent by a client.

    Returns:
        ``(version, frame)``.

    Raises:
        WireError: with ``code`` MALFORMED, VERSION or TOO_LARGE.
    """
    version, fields = decode_map(data, max_size=max_size, versions=versions)
    frame: ClientFrame = _dispatch(_CLIENT_FRAMES, fields)
    return version, frame


def decode_owner_command(
    data: bytes, *, versions: VersionRange = SUPPORTED_VERSIONS
) -> OwnerCommand:
    """Decode and shape-check the signed body of an owner command.

    Raises:
        WireError: with ``code`` MALFORMED, VERSION or TOO_LARGE.
    """
    _, fields = decode_map(data, max_size=MAX_OWNER_COMMAND_SIZE, versions=versions)
    cmd = OwnerCommand.from_map(fields)
    cmd.validate_shape()
    return cmd


# --- relay -> client -------------------------------------------------------------------------


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
class StoredEnvelope(Struct):
    """An envelope as the relay hands it to the owner.

    ``seq`` is the per-mailbox sequence number (0 for online-only envelopes, which are never
    stored and need no ack), ``ts`` the relay's receive time in whole seconds, ``hdl`` the
    requester's handle (contact addresses only; revision 3), ``ft`` and ``fx`` the relay's
    franking tag over ``fc`` and its context (every envelope deposited with ``fc``; revision 4,
    protocol.md §4.11) -- keep them with the franking key to be able to report the message.
    """

    seq: int = wire(Int(0, 2**63 - 1))
    eid: bytes = wire(_ENVELOPE_ID)
    ts: int = wire(Int())
    flags: int = wire(_FLAGS)
    ct: bytes = wire(_CT)
    fc: bytes | None = wire(_FC, default=None)
    hdl: bytes | None = wire(_HANDLE, default=None)
    ft: bytes | None = wire(_FT, default=None)
    fx: bytes | None = wire(_FX, default=None)


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


_RELAY_FRAMES: dict[str, type[RelayFrame]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Ok,
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
        ReportAccepted,
        ReportStatus,
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
