"""Owner commands (protocol.md §4.3-§4.11): the signed body, and one frozen type per operation.

:class:`OwnerCommand` is the signed body as it travels (``version || msgpack(map)``, not a frame
of its own: no ``t`` field); clients build and encode it. The signature covers exactly the bytes
received (``OWNER_COMMAND_CONTEXT || body``), never a re-encoding.

A relay decodes it with :func:`decode_owner_op` into one frozen value type per operation
(:class:`CreateMailbox`, :class:`Subscribe`, ... :class:`GetReportStatus`), in the style of
h11 and wsproto events, so handlers ``match`` on the type and every field an operation requires
is typed as present. Those types are also the per-operation field rules: a field annotated
``X | None`` is one the operation allows, any other one it requires, and every field of
:class:`OwnerCommand` not named there is refused (``MALFORMED``) -- the rules are declared once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, get_args

from clientlib.errors import WireError
from clientlib.wire.codec import (
    Bin,
    Int,
    ListOf,
    Str,
    Struct,
    StructField,
    Text,
    _admits_none,
    decode_map,
    wire,
    wire_struct,
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
    MAX_PUSH_URL_BYTES,
    MAX_REPORT_ATTACHMENTS,
    MAX_REPORT_NOTE_BYTES,
    MAX_REPORTED_MESSAGE_SIZE,
    PUSH_TOKEN_SIZE,
    REPORT_REASONS,
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
    OP_BAN,
    OP_BOUNDARIES,
    OP_CAPS,
    OP_CREATE,
    OP_DELEGATED_CAPS,
    OP_DELETE,
    OP_FETCH,
    OP_INFO,
    OP_PREKEYS,
    OP_PUSH,
    OP_REPORT,
    OP_REPORT_STATUS,
    OP_SUBSCRIBE,
    OP_UNPUSH,
    OWNER_OPS,
    Boundaries,
)
from clientlib.wire.version import SUPPORTED_VERSIONS, VersionRange

__all__ = [
    "AnyOwnerOp",
    "CreateMailbox",
    "DelegatedCapabilities",
    "DeleteMailbox",
    "FetchEnvelopes",
    "FileReport",
    "GetInfo",
    "GetReportStatus",
    "MailboxOp",
    "OwnerCommand",
    "OwnerOp",
    "PutPreKeys",
    "RegisterPush",
    "SetBans",
    "SetBoundaries",
    "SetCapabilities",
    "Subscribe",
    "UnregisterPush",
    "decode_owner_command",
    "decode_owner_op",
    "owner_op",
]

#: An attachment plaintext's SHA-256 in a report's ``ath`` (revision 8).
_SHA256_SIZE = 32


@wire_struct
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
    ``info`` carries nothing else. (The per-operation types below declare these rules.)

    Revision 4 (protocol.md §4.11): ``report`` needs ``msg`` (the reported content bytes),
    ``fk``, ``fc``, ``ft``, ``fx`` (franking key, commitment, relay tag and its context, as
    delivered), ``snd`` and ``rcp`` (the sender's and recipient's identity keys) and ``why``
    (one of ``REPORT_REASONS``), and may carry ``atts`` (the attachment plaintexts, in order)
    or, instead (revision 8, §5.9), ``ath`` (their SHA-256, in order; each plaintext is then
    revealed with ``PUT /v1/report/<report>/<i>``), and ``note``; ``rstat`` needs ``report``
    (a report id the mailbox filed).
    Revision 9 (§26.2): ``dcaps`` needs ``sid`` (the send id of the mailbox) and ``key`` (the
    delegate's Ed25519 key, which signs the command) and may carry ``add`` and ``remove``.
    Revision 12 (§28): ``push`` needs ``url`` (the push endpoint) and ``tok`` (the 32-byte
    opaque token a wake-up carries); ``unpush`` carries nothing else.
    Revision 5 (§15.5.8): ``report`` carries ``amf`` (the sender's 448-byte AMF signature)
    and ``akid`` (u32, the key it was made under); a revision-5 relay refuses a report
    without them (``FRANKING``).
    """

    op: str = wire(Str(OWNER_OPS))
    nonce: bytes = wire(Bin(CHALLENGE_SIZE))
    rid: bytes | None = wire(_MAILBOX_ID, default=None)
    key: bytes | None = wire(Bin(ED25519_PUBLIC_KEY_SIZE), default=None)
    ack: tuple[int, ...] | None = wire(ListOf(_SEQ, MAX_ACK_BATCH), default=None)
    max: int | None = wire(Int(0, MAX_FETCH_BATCH), default=None)
    static: bytes | None = wire(_PREKEY_STATIC, default=None)
    otk: tuple[bytes, ...] | None = wire(ListOf(_PREKEY_ITEM, MAX_PREKEY_UPLOAD), default=None)
    replace: int | None = wire(Int(0, 1), default=None)
    kind: str | None = wire(Str(MAILBOX_KINDS), default=None)
    bnd: Boundaries | None = wire(StructField(Boundaries), default=None)
    add: tuple[bytes, ...] | None = wire(ListOf(_CAP_HASH, MAX_CAPS_PER_COMMAND), default=None)
    remove: tuple[bytes, ...] | None = wire(
        ListOf(_CAP_HASH, MAX_CAPS_PER_COMMAND), key="del", default=None
    )
    hdl: tuple[bytes, ...] | None = wire(ListOf(_HANDLE, MAX_BANS_PER_COMMAND), default=None)
    unban: tuple[bytes, ...] | None = wire(ListOf(_HANDLE, MAX_BANS_PER_COMMAND), default=None)
    msg: bytes | None = wire(Bin(min=0, max=MAX_REPORTED_MESSAGE_SIZE), default=None)
    fk: bytes | None = wire(Bin(FRANKING_KEY_SIZE), default=None)
    fc: bytes | None = wire(_FC, default=None)
    ft: bytes | None = wire(_FT, default=None)
    fx: bytes | None = wire(_FX, default=None)
    snd: bytes | None = wire(Bin(ED25519_PUBLIC_KEY_SIZE), default=None)
    rcp: bytes | None = wire(Bin(ED25519_PUBLIC_KEY_SIZE), default=None)
    atts: tuple[bytes, ...] | None = wire(
        ListOf(Bin(min=0, max=MAX_OWNER_COMMAND_SIZE), MAX_REPORT_ATTACHMENTS), default=None
    )
    ath: tuple[bytes, ...] | None = wire(
        ListOf(Bin(_SHA256_SIZE), MAX_REPORT_ATTACHMENTS), default=None
    )
    why: str | None = wire(Str(REPORT_REASONS), default=None)
    note: str | None = wire(Text(MAX_REPORT_NOTE_BYTES), default=None)
    report: bytes | None = wire(_REPORT_ID, default=None)
    amf: bytes | None = wire(Bin(AMF_SIGNATURE_SIZE), default=None)
    akid: int | None = wire(Int(0, 2**32 - 1), default=None)
    sid: bytes | None = wire(_MAILBOX_ID, default=None)
    url: str | None = wire(Text(MAX_PUSH_URL_BYTES), default=None)
    tok: bytes | None = wire(Bin(PUSH_TOKEN_SIZE), default=None)

    def validate_shape(self) -> None:
        """Check the per-operation field rules (declared by the per-operation types).

        Raises:
            WireError: a field is missing or present where ``op`` does not allow it.
        """
        required, allowed = _RULES[self.op]
        present = {
            f.attr
            for f in self.SCHEMA
            if f.attr not in ("op", "nonce") and getattr(self, f.attr) is not None
        }
        if not required <= present <= required | allowed:
            raise WireError("owner command fields do not match its operation")
        if self.op == OP_CREATE and self.bnd is not None and self.kind != KIND_ADDRESS:
            raise WireError("boundaries belong to contact addresses only")
        if self.atts is not None and self.ath is not None:
            raise WireError("a report reveals attachments inline (atts) or by hash (ath)")

    @property
    def is_prekey_query(self) -> bool:
        """True for a ``keys`` command that changes nothing (a status query)."""
        return self.op == OP_PREKEYS and not self.static and not self.otk and not self.replace


# --- one type per operation ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerOp:
    """Base of the decoded owner operations: ``OP`` names the operation on the wire, ``nonce``
    is the challenge the command was signed over. Don't subclass these outside this module."""

    OP: ClassVar[str] = ""
    nonce: bytes

    @property
    def target(self) -> bytes | None:
        """The mailbox the command acts on (its challenge is bound to it); None for create."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateMailbox(OwnerOp):
    """``create``: a new mailbox owned by ``key``, of ``kind`` (None: open), with ``bnd``
    (contact addresses only)."""

    OP: ClassVar[str] = OP_CREATE
    key: bytes
    kind: str | None
    bnd: Boundaries | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxOp(OwnerOp):
    """Base of every operation on an existing mailbox ``rid``."""

    rid: bytes

    @property
    def target(self) -> bytes | None:
        return self.rid


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe(MailboxOp):
    """``sub``: push this mailbox's envelopes on this socket (protocol.md §5.3)."""

    OP: ClassVar[str] = OP_SUBSCRIBE


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteMailbox(MailboxOp):
    """``delete``: the mailbox and everything it holds."""

    OP: ClassVar[str] = OP_DELETE


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchEnvelopes(MailboxOp):
    """``fetch`` (HTTP pull): delete ``ack`` first, then return at most ``max`` envelopes."""

    OP: ClassVar[str] = OP_FETCH
    ack: tuple[int, ...] | None
    max: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PutPreKeys(MailboxOp):
    """``keys`` (protocol.md §4.7): replace ``static``, append ``otk`` (after deleting every
    stored one-time item if ``replace``), or, with none of them, ask for the status."""

    OP: ClassVar[str] = OP_PREKEYS
    static: bytes | None
    otk: tuple[bytes, ...] | None
    replace: int | None

    @property
    def is_query(self) -> bool:
        """True for a command that changes nothing (a status query)."""
        return not self.static and not self.otk and not self.replace


@dataclass(frozen=True, slots=True, kw_only=True)
class SetCapabilities(MailboxOp):
    """``caps`` (protocol.md §4.8): remove ``remove`` (wire key ``del``), then add ``add``."""

    OP: ClassVar[str] = OP_CAPS
    add: tuple[bytes, ...] | None
    remove: tuple[bytes, ...] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetBoundaries(MailboxOp):
    """``bnd`` (protocol.md §4.9): replace a contact address's boundaries."""

    OP: ClassVar[str] = OP_BOUNDARIES
    bnd: Boundaries


@dataclass(frozen=True, slots=True, kw_only=True)
class SetBans(MailboxOp):
    """``ban`` (protocol.md §4.9): lift ``unban``, then ban ``hdl`` (requester handles)."""

    OP: ClassVar[str] = OP_BAN
    hdl: tuple[bytes, ...] | None
    unban: tuple[bytes, ...] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetInfo(MailboxOp):
    """``info`` (protocol.md §4.10): what the relay holds about the mailbox."""

    OP: ClassVar[str] = OP_INFO


@dataclass(frozen=True, slots=True, kw_only=True)
class FileReport(MailboxOp):
    """``report`` (protocol.md §4.11, §15.4, §15.5.8): the reported message ``msg`` with its
    franking evidence, the sender binding ``amf``/``akid`` (revision 5) and the reason."""

    OP: ClassVar[str] = OP_REPORT
    msg: bytes
    fk: bytes
    fc: bytes
    ft: bytes
    fx: bytes
    snd: bytes
    rcp: bytes
    why: str
    atts: tuple[bytes, ...] | None
    ath: tuple[bytes, ...] | None
    note: str | None
    amf: bytes | None
    akid: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetReportStatus(MailboxOp):
    """``rstat``: the outcome of a report this mailbox filed."""

    OP: ClassVar[str] = OP_REPORT_STATUS
    report: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DelegatedCapabilities(OwnerOp):
    """``dcaps`` (protocol.md §26.2, revision 9): a delegate ``key`` the owner of the ``pair``
    mailbox with send id ``sid`` registered removes capability hashes ``remove`` (wire key
    ``del``), then adds ``add`` there. Signed by ``key``; the challenge is bound to ``sid``
    (the ``rid`` field of ``chal``)."""

    OP: ClassVar[str] = OP_DELEGATED_CAPS
    sid: bytes
    key: bytes
    add: tuple[bytes, ...] | None
    remove: tuple[bytes, ...] | None

    @property
    def target(self) -> bytes | None:
        return self.sid


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterPush(MailboxOp):
    """``push`` (protocol.md §28, revision 12): wake-ups of this mailbox go to ``url`` (an
    https push endpoint, UnifiedPush-compatible), each an HTTP POST whose whole body is the
    opaque ``tok``. Replaces an endpoint registered before."""

    OP: ClassVar[str] = OP_PUSH
    url: str
    tok: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UnregisterPush(MailboxOp):
    """``unpush`` (protocol.md §28): forget the mailbox's push endpoint (if any)."""

    OP: ClassVar[str] = OP_UNPUSH


AnyOwnerOp = (
    CreateMailbox
    | Subscribe
    | DeleteMailbox
    | FetchEnvelopes
    | PutPreKeys
    | SetCapabilities
    | SetBoundaries
    | SetBans
    | GetInfo
    | FileReport
    | GetReportStatus
    | DelegatedCapabilities
    | RegisterPush
    | UnregisterPush
)

_TYPES: dict[str, type[OwnerOp]] = {cls.OP: cls for cls in get_args(AnyOwnerOp)}
assert set(_TYPES) == set(OWNER_OPS)


def _rules(cls: type[OwnerOp]) -> tuple[frozenset[str], frozenset[str]]:
    """The owner command fields (besides ``op`` and ``nonce``) ``cls`` requires, and those it
    allows: an attribute annotated ``X | None`` is allowed, any other one required."""
    fields = [f for f in dataclasses.fields(cls) if f.name != "nonce"]
    optional = frozenset(f.name for f in fields if _admits_none(f.type))
    return frozenset(f.name for f in fields) - optional, optional


#: Per operation: the attribute names its type carries (besides ``nonce``).
_ATTRS: dict[str, tuple[str, ...]] = {
    op: tuple(f.name for f in dataclasses.fields(cls) if f.name != "nonce")
    for op, cls in _TYPES.items()
}
#: Per operation: the owner command fields it requires, and those it allows.
_RULES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    op: _rules(cls) for op, cls in _TYPES.items()
}


def owner_op(cmd: OwnerCommand) -> AnyOwnerOp:
    """Shape-check ``cmd`` and return it as its operation's type.

    Raises:
        WireError: MALFORMED -- a field is missing or present where ``op`` does not allow it.
    """
    cmd.validate_shape()
    cls = _TYPES[cmd.op]
    op: AnyOwnerOp = cls(nonce=cmd.nonce, **{a: getattr(cmd, a) for a in _ATTRS[cmd.op]})  # type: ignore[assignment]
    return op


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


def decode_owner_op(data: bytes, *, versions: VersionRange = SUPPORTED_VERSIONS) -> AnyOwnerOp:
    """Decode the signed body of an owner command into its operation's type.

    Raises:
        WireError: with ``code`` MALFORMED, VERSION or TOO_LARGE.
    """
    _, fields = decode_map(data, max_size=MAX_OWNER_COMMAND_SIZE, versions=versions)
    return owner_op(OwnerCommand.from_map(fields))
