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


@dataclass(frozen=True, slots=True)
class Boundaries(Struct):
    """What a contact address accepts (protocol.md §4.9; revision 3).

    ``size``: the largest request envelope, one of the buckets 2048..65536; ``att``: 1 if
    requests may reference attachments; ``day``: requests stored per UTC day; ``pow``: the
    proof-of-work difficulty in leading zero bits (0: none).
    """

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("size", "size", IntIn(BOUNDARY_SIZES)),
        Field("att", "att", Int(0, 1)),
        Field("day", "day", Int(1, MAX_REQUESTS_PER_DAY)),
        Field("pow", "pow", Int(0, MAX_POW_BITS)),
    )
    size: int
    att: int
    day: int
    pow: int


#: The boundaries of a contact address created without any (max size 4096, no attachments,
#: 100 requests a day, no proof of work).
DEFAULT_BOUNDARIES = Boundaries(size=4096, att=0, day=100, pow=0)


# --- client -> relay -------------------------------------------------------------------------


class ClientFrame(Struct):
    """Base of frames a client sends."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class RequestChallenge(ClientFrame):
    """Ask for a single-use challenge for one owner operation on one mailbox.

    ``rid`` is absent for ``create`` (the mailbox does not exist yet).
    """

    TYPE: ClassVar[str] = "chal"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("op", "op", Str(OWNER_OPS)),
        Field("rid", "rid", _MAILBOX_ID, required=False),
    )
    id: int
    op: str
    rid: bytes | None = None


@dataclass(frozen=True, slots=True)
class SignedOwnerCommand(ClientFrame):
    """An owner command: ``cmd`` is an encoded :class:`OwnerCommand`, ``sig`` its signature."""

    TYPE: ClassVar[str] = "own"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("cmd", "cmd", Bin(min=2, max=MAX_OWNER_COMMAND_SIZE)),
        Field("sig", "sig", Bin(ED25519_SIGNATURE_SIZE)),
    )
    id: int
    cmd: bytes
    sig: bytes


@dataclass(frozen=True, slots=True)
class Deposit(ClientFrame):
    """Deposit one envelope into the mailbox whose send id is ``sid``.

    Revision 3 (protocol.md §4.8, §4.9): ``cap`` is the send capability a pairwise mailbox
    requires; ``hdl`` (the requester's handle, required by contact addresses), ``att``
    (attachment ids the envelope references), ``pow`` (a relay-issued nonce) and ``pwc`` (the
    proof-of-work counter) are for contact addresses. Fields a mailbox's kind does not use are
    ignored.
    """

    TYPE: ClassVar[str] = "dep"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("sid", "sid", _MAILBOX_ID),
        Field("eid", "eid", _ENVELOPE_ID),
        Field("flags", "flags", _FLAGS),
        Field("ct", "ct", _CT),
        Field("fc", "fc", _FC, required=False),
        Field("cap", "cap", Bin(CAPABILITY_SIZE), required=False),
        Field("hdl", "hdl", _HANDLE, required=False),
        Field("att", "att", ListOf(Bin(ATTACHMENT_ID_SIZE), MAX_ATTACHMENT_REFS), required=False),
        Field("pow", "pow", Bin(POW_NONCE_SIZE), required=False),
        Field("pwc", "pwc", Int(0, 2**64 - 1), required=False),
    )
    id: int
    sid: bytes
    eid: bytes
    flags: int
    ct: bytes
    fc: bytes | None = None
    cap: bytes | None = None
    hdl: bytes | None = None
    att: tuple[bytes, ...] | None = None
    pow: bytes | None = None
    pwc: int | None = None


@dataclass(frozen=True, slots=True)
class Ack(ClientFrame):
    """Acknowledge (and so delete) envelopes pushed on this connection for mailbox ``rid``."""

    TYPE: ClassVar[str] = "ack"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("rid", "rid", _MAILBOX_ID),
        Field("seqs", "seqs", ListOf(_SEQ, MAX_ACK_BATCH)),
    )
    id: int
    rid: bytes
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe(ClientFrame):
    """Stop pushes for mailbox ``rid`` on this connection."""

    TYPE: ClassVar[str] = "unsub"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("rid", "rid", _MAILBOX_ID),
    )
    id: int
    rid: bytes


@dataclass(frozen=True, slots=True)
class FetchBundle(ClientFrame):
    """Ask for the prekey bundle of the mailbox whose send id is ``sid`` (protocol.md §4.7).

    The relay answers :class:`BundleIssued`, consuming one one-time item if it hands one out.
    """

    TYPE: ClassVar[str] = "bundle"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("sid", "sid", _MAILBOX_ID),
    )
    id: int
    sid: bytes


@dataclass(frozen=True, slots=True)
class GetBoundaries(ClientFrame):
    """Ask for the boundaries of the contact address whose send id is ``sid`` (§4.9)."""

    TYPE: ClassVar[str] = "bnd?"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("sid", "sid", _MAILBOX_ID),
    )
    id: int
    sid: bytes


@dataclass(frozen=True, slots=True)
class GetPow(ClientFrame):
    """Ask for a single-use proof-of-work nonce for the contact address ``sid`` (§4.9)."""

    TYPE: ClassVar[str] = "pow?"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("sid", "sid", _MAILBOX_ID),
    )
    id: int
    sid: bytes


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


@dataclass(frozen=True, slots=True)
class RelayLimits(Struct):
    """The limits a relay applies, announced in :class:`Hello`."""

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("frame", "max_frame", Int()),
        Field("env", "max_envelope", Int()),
        Field("subs", "max_subscriptions", Int()),
        Field("chal_ttl", "challenge_ttl_s", Int()),
        Field("ttl", "envelope_ttl_s", Int()),
        Field("window", "push_window", Int()),
    )
    max_frame: int
    max_envelope: int
    max_subscriptions: int
    challenge_ttl_s: int
    envelope_ttl_s: int
    push_window: int


@dataclass(frozen=True, slots=True)
class Hello(RelayFrame):
    """First frame on every WebSocket: the relay's version range and limits."""

    TYPE: ClassVar[str] = "hello"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("min", "min", Int(1, 255)),
        Field("max", "max", Int(1, 255)),
        Field("lim", "limits", StructField(RelayLimits)),
    )
    min: int
    max: int
    limits: RelayLimits


@dataclass(frozen=True, slots=True)
class Ok(RelayFrame):
    """Request ``id`` succeeded (deposit stored or pushed, ack applied, subscribed, ...)."""

    TYPE: ClassVar[str] = "ok"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field("id", "id", _REQ_ID),)
    id: int


@dataclass(frozen=True, slots=True)
class ErrorReply(RelayFrame):
    """Request ``id`` failed with ``code`` (``id`` absent when the frame could not be parsed)."""

    TYPE: ClassVar[str] = "err"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("code", "code", Str([c.value for c in ErrorCode])),
        Field("id", "id", _REQ_ID, required=False),
    )
    code: str
    id: int | None = None


@dataclass(frozen=True, slots=True)
class ChallengeIssued(RelayFrame):
    """A single-use challenge for the operation requested by ``id``."""

    TYPE: ClassVar[str] = "chal"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("nonce", "nonce", Bin(CHALLENGE_SIZE)),
    )
    id: int
    nonce: bytes


@dataclass(frozen=True, slots=True)
class MailboxCreated(RelayFrame):
    """A new mailbox: ``rid`` for its owner, ``sid`` to give to senders."""

    TYPE: ClassVar[str] = "created"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("rid", "rid", _MAILBOX_ID),
        Field("sid", "sid", _MAILBOX_ID),
    )
    id: int
    rid: bytes
    sid: bytes


@dataclass(frozen=True, slots=True)
class StoredEnvelope(Struct):
    """An envelope as the relay hands it to the owner.

    ``seq`` is the per-mailbox sequence number (0 for online-only envelopes, which are never
    stored and need no ack), ``ts`` the relay's receive time in whole seconds, ``hdl`` the
    requester's handle (contact addresses only; revision 3), ``ft`` and ``fx`` the relay's
    franking tag over ``fc`` and its context (every envelope deposited with ``fc``; revision 4,
    protocol.md §4.11) -- keep them with the franking key to be able to report the message.
    """

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("seq", "seq", Int(0, 2**63 - 1)),
        Field("eid", "eid", _ENVELOPE_ID),
        Field("ts", "ts", Int()),
        Field("flags", "flags", _FLAGS),
        Field("ct", "ct", _CT),
        Field("fc", "fc", _FC, required=False),
        Field("hdl", "hdl", _HANDLE, required=False),
        Field("ft", "ft", _FT, required=False),
        Field("fx", "fx", _FX, required=False),
    )
    seq: int
    eid: bytes
    ts: int
    flags: int
    ct: bytes
    fc: bytes | None = None
    hdl: bytes | None = None
    ft: bytes | None = None
    fx: bytes | None = None


@dataclass(frozen=True, slots=True)
class EnvelopeDelivered(RelayFrame):
    """An envelope pushed to a subscribed owner; ``env`` fields inlined with ``rid``."""

    TYPE: ClassVar[str] = "env"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("rid", "rid", _MAILBOX_ID),
        Field("env", "env", StructField(StoredEnvelope)),
    )
    rid: bytes
    env: StoredEnvelope


@dataclass(frozen=True, slots=True)
class EnvelopesFetched(RelayFrame):
    """Reply to an owner ``fetch``: oldest-first envelopes; ``more`` if others wait."""

    TYPE: ClassVar[str] = "envs"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("envs", "envs", ListOf(StructField(StoredEnvelope), MAX_FETCH_BATCH)),
        Field("more", "more", Int(0, 1)),
    )
    id: int
    envs: tuple[StoredEnvelope, ...]
    more: int


@dataclass(frozen=True, slots=True)
class Drained(RelayFrame):
    """Every envelope stored for ``rid`` when the subscription began has now been pushed."""

    TYPE: ClassVar[str] = "drained"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field("rid", "rid", _MAILBOX_ID),)
    rid: bytes


@dataclass(frozen=True, slots=True)
class PreKeysStored(RelayFrame):
    """Reply to a ``keys`` owner command: what the mailbox now holds.

    ``left`` is the number of one-time items held, ``static`` 1 if a static part is held.
    """

    TYPE: ClassVar[str] = "keys"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("left", "left", Int(0, 2**32 - 1)),
        Field("static", "static", Int(0, 1)),
    )
    id: int
    left: int
    static: int


@dataclass(frozen=True, slots=True)
class BundleIssued(RelayFrame):
    """Reply to :class:`FetchBundle`: the static prekey part and, if one was handed out, a
    one-time item (absent when none is left or the mailbox's hourly allowance is used up);
    ``bnd``: the boundaries, when the mailbox is a contact address (revision 3)."""

    TYPE: ClassVar[str] = "bundle"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("static", "static", _PREKEY_STATIC),
        Field("otk", "otk", _PREKEY_ITEM, required=False),
        Field("bnd", "bnd", StructField(Boundaries), required=False),
    )
    id: int
    static: bytes
    otk: bytes | None = None
    bnd: Boundaries | None = None


@dataclass(frozen=True, slots=True)
class BoundariesIssued(RelayFrame):
    """Reply to :class:`GetBoundaries`: what the contact address accepts."""

    TYPE: ClassVar[str] = "bnd"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("bnd", "bnd", StructField(Boundaries)),
    )
    id: int
    bnd: Boundaries


@dataclass(frozen=True, slots=True)
class PowIssued(RelayFrame):
    """Reply to :class:`GetPow`: a single-use ``nonce``, the difficulty ``bits`` and the
    expiry ``exp`` (seconds since the epoch) of the nonce."""

    TYPE: ClassVar[str] = "pow"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("nonce", "nonce", Bin(POW_NONCE_SIZE)),
        Field("bits", "bits", Int(0, MAX_POW_BITS)),
        Field("exp", "exp", Int()),
    )
    id: int
    nonce: bytes
    bits: int
    exp: int


@dataclass(frozen=True, slots=True)
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
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("kind", "kind", Str(MAILBOX_KINDS)),
        Field("sid", "sid", _MAILBOX_ID),
        Field("owner_key", "owner_key", Bin(ED25519_PUBLIC_KEY_SIZE)),
        Field("created_day", "created_day", _DAY),
        Field("active_day", "active_day", _DAY),
        Field("last_seq", "last_seq", _COUNT),
        Field("envelopes", "envelopes", _COUNT),
        Field("bytes", "stored_bytes", _COUNT),
        Field("oldest_ts", "oldest_ts", _COUNT, required=False),
        Field("dedupe_records", "dedupe_records", _COUNT),
        Field("prekeys_left", "prekeys_left", _COUNT),
        Field("prekey_static", "prekey_static", Int(0, 1)),
        Field("prekey_hour", "prekey_hour", _COUNT, required=False),
        Field("prekeys_handed", "prekeys_handed", _COUNT),
        Field("caps", "caps", _COUNT),
        Field("bnd", "bnd", StructField(Boundaries), required=False),
        Field("bans", "bans", _COUNT),
        Field("requests_day", "requests_day", _DAY, required=False),
        Field("requests", "requests", _COUNT),
        Field("requests_today", "requests_today", _COUNT),
        Field("suspended", "suspended", Int(1, 1), required=False),
    )
    id: int
    kind: str
    sid: bytes
    owner_key: bytes
    created_day: int
    active_day: int
    last_seq: int
    envelopes: int
    stored_bytes: int
    oldest_ts: int | None
    dedupe_records: int
    prekeys_left: int
    prekey_static: int
    prekey_hour: int | None
    prekeys_handed: int
    caps: int
    bnd: Boundaries | None
    bans: int
    requests_day: int | None
    requests: int
    requests_today: int
    suspended: int | None = None


@dataclass(frozen=True, slots=True)
class ReportAccepted(RelayFrame):
    """Reply to a ``report`` owner command: the report verified and is stored under the
    16-byte id ``report`` (protocol.md §4.11; revision 4)."""

    TYPE: ClassVar[str] = "reported"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("report", "report", _REPORT_ID),
    )
    id: int
    report: bytes


@dataclass(frozen=True, slots=True)
class ReportStatus(RelayFrame):
    """Reply to an ``rstat`` owner command: the state of a report the mailbox filed.

    ``status`` is ``open`` or ``resolved``; ``action`` what the moderator did (``none``,
    ``revoke``, ``suspend``; absent while open); ``ts`` when it was resolved, or filed while
    open (seconds since the epoch). Revision 4.
    """

    TYPE: ClassVar[str] = "rstat"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("report", "report", _REPORT_ID),
        Field("status", "status", Str(REPORT_STATUSES)),
        Field("action", "action", Str(REPORT_ACTIONS), required=False),
        Field("ts", "ts", Int()),
    )
    id: int
    report: bytes
    status: str
    action: str | None
    ts: int


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
