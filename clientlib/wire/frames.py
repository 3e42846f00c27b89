"""Every v1 frame, as immutable value types (protocol.md §3 and §4).

The frames live by direction: :mod:`clientlib.wire.client_frames` (client -> relay, commands
named as imperatives: ``Deposit``, ``Ack``), :mod:`clientlib.wire.relay_frames` (relay ->
client, named after what happened: ``ChallengeIssued``, ``EnvelopeDelivered``) and
:mod:`clientlib.wire.shared` (the pieces both use). This module re-exports them all, so
``from clientlib.wire.frames import X`` keeps working, and is the home of the owner command.

The signed body of an owner command (``OwnerCommand``) is itself a versioned structure; the
signature covers exactly the bytes received (``OWNER_COMMAND_CONTEXT || body``), never a
re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clientlib.errors import WireError
from clientlib.wire.client_frames import (
    Ack,
    ClientFrame,
    Deposit,
    FetchBundle,
    GetBoundaries,
    GetModerationKeys,
    GetPow,
    RequestChallenge,
    SignedOwnerCommand,
    Unsubscribe,
    decode_client_frame,
)
from clientlib.wire.codec import (
    Bin,
    Field,
    Int,
    ListOf,
    Str,
    Struct,
    StructField,
    Text,
    decode_map,
)
from clientlib.wire.limits import (
    AMF_SIGNATURE_SIZE,
    CHALLENGE_SIZE,
    ED25519_PUBLIC_KEY_SIZE,
    FRANKING_KEY_SIZE,
    KIND_ADDRESS,
    MAILBOX_KINDS,
    MAX_ACK_BATCH,
    MAX_BANS_PER_COMMAND,
    MAX_CAPS_PER_COMMAND,
    MAX_FETCH_BATCH,
    MAX_OWNER_COMMAND_SIZE,
    MAX_PREKEY_UPLOAD,
    MAX_REPORT_ATTACHMENTS,
    MAX_REPORT_NOTE_BYTES,
    MAX_REPORTED_MESSAGE_SIZE,
    REPORT_REASONS,
)
from clientlib.wire.relay_frames import (
    BoundariesIssued,
    BundleIssued,
    ChallengeIssued,
    Drained,
    EnvelopeDelivered,
    EnvelopesFetched,
    ErrorReply,
    Hello,
    MailboxCreated,
    MailboxInfo,
    ModerationKeys,
    ModeratorKeyEntry,
    Ok,
    PowIssued,
    PreKeysStored,
    RelayFrame,
    RelayLimits,
    ReportAccepted,
    ReportStatus,
    decode_relay_frame,
)
from clientlib.wire.shared import (
    _CAP_HASH,
    _FC,
    _FT,
    _FX,
    _HANDLE,
    _MAILBOX_ID,
    _PREKEY_ITEM,
    _PREKEY_STATIC,
    _REPORT_ID,
    _SEQ,
    DEFAULT_BOUNDARIES,
    OP_BAN,
    OP_BOUNDARIES,
    OP_CAPS,
    OP_CREATE,
    OP_DELETE,
    OP_FETCH,
    OP_INFO,
    OP_PREKEYS,
    OP_REPORT,
    OP_REPORT_STATUS,
    OP_SUBSCRIBE,
    OWNER_OPS,
    Boundaries,
    StoredEnvelope,
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
    "GetModerationKeys",
    "GetPow",
    "Hello",
    "MailboxCreated",
    "MailboxInfo",
    "ModerationKeys",
    "ModeratorKeyEntry",
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
        frozenset({"atts", "note", "amf", "akid"}),
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
    Revision 5 (§15.5.8): ``report`` carries ``amf`` (the sender's 448-byte AMF signature)
    and ``akid`` (u32, the key it was made under); a revision-5 relay refuses a report
    without them (``FRANKING``).
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
        Field("amf", "amf", Bin(AMF_SIGNATURE_SIZE), required=False),
        Field("akid", "akid", Int(0, 2**32 - 1), required=False),
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
    amf: bytes | None = None
    akid: int | None = None

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
