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
from clientlib.wire.codec import Bin, Field, Int, ListOf, Str, Struct, StructField, decode_map
from clientlib.wire.codes import ErrorCode
from clientlib.wire.limits import (
    CHALLENGE_SIZE,
    ED25519_PUBLIC_KEY_SIZE,
    ED25519_SIGNATURE_SIZE,
    ENVELOPE_ID_SIZE,
    FRANKING_COMMITMENT_SIZE,
    MAILBOX_ID_SIZE,
    MAX_ACK_BATCH,
    MAX_ENVELOPE_SIZE,
    MAX_FETCH_BATCH,
    MAX_FRAME_SIZE,
    MAX_OWNER_COMMAND_SIZE,
    MAX_PREKEY_ITEM_SIZE,
    MAX_PREKEY_STATIC_SIZE,
    MAX_PREKEY_UPLOAD,
    MAX_RELAY_FRAME_SIZE,
    MAX_REQUEST_ID,
)
from clientlib.wire.version import SUPPORTED_VERSIONS, VersionRange

__all__ = [
    "OP_CREATE",
    "OP_DELETE",
    "OP_FETCH",
    "OP_PREKEYS",
    "OP_SUBSCRIBE",
    "OWNER_OPS",
    "Ack",
    "BundleIssued",
    "ChallengeIssued",
    "ClientFrame",
    "Deposit",
    "Drained",
    "EnvelopeDelivered",
    "EnvelopesFetched",
    "ErrorReply",
    "FetchBundle",
    "Hello",
    "MailboxCreated",
    "Ok",
    "OwnerCommand",
    "PreKeysStored",
    "RelayFrame",
    "RelayLimits",
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
OWNER_OPS = (OP_CREATE, OP_SUBSCRIBE, OP_DELETE, OP_FETCH, OP_PREKEYS)

_REQ_ID = Int(0, MAX_REQUEST_ID)
_MAILBOX_ID = Bin(MAILBOX_ID_SIZE)
_ENVELOPE_ID = Bin(ENVELOPE_ID_SIZE)
_SEQ = Int(1, 2**63 - 1)
_CT = Bin(min=1, max=MAX_ENVELOPE_SIZE)
_FC = Bin(FRANKING_COMMITMENT_SIZE)
_FLAGS = Int(0, 255)
_PREKEY_STATIC = Bin(min=1, max=MAX_PREKEY_STATIC_SIZE)
_PREKEY_ITEM = Bin(min=1, max=MAX_PREKEY_ITEM_SIZE)


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
    """Deposit one envelope into the mailbox whose send id is ``sid``."""

    TYPE: ClassVar[str] = "dep"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("sid", "sid", _MAILBOX_ID),
        Field("eid", "eid", _ENVELOPE_ID),
        Field("flags", "flags", _FLAGS),
        Field("ct", "ct", _CT),
        Field("fc", "fc", _FC, required=False),
    )
    id: int
    sid: bytes
    eid: bytes
    flags: int
    ct: bytes
    fc: bytes | None = None


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
class OwnerCommand(Struct):
    """The signed body of an owner command (not a frame of its own; no ``t`` field).

    Fields by ``op``: ``create`` needs ``key``; ``sub``, ``delete``, ``fetch`` and ``keys``
    need ``rid``; ``fetch`` may carry ``ack`` (sequence numbers to delete first) and ``max``;
    ``keys`` may carry ``static`` (replaces the stored static prekey part), ``otk`` (one-time
    items to append) and ``replace`` (1: delete every stored one-time item first). A ``keys``
    command with neither ``static`` nor ``otk`` and no ``replace`` is a status query.
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

    def validate_shape(self) -> None:
        """Check the per-operation field rules.

        Raises:
            WireError: a field is missing or present where ``op`` does not allow it.
        """
        no_prekeys = self.static is None and self.otk is None and self.replace is None
        if self.op == OP_CREATE:
            ok = (
                self.key is not None
                and self.rid is None
                and self.ack is None
                and self.max is None
                and no_prekeys
            )
        elif self.op == OP_FETCH:
            ok = self.rid is not None and self.key is None and no_prekeys
        elif self.op == OP_PREKEYS:
            ok = self.rid is not None and self.key is None and self.ack is None and self.max is None
        else:
            ok = (
                self.rid is not None
                and self.key is None
                and self.ack is None
                and self.max is None
                and no_prekeys
            )
        if not ok:
            raise WireError("owner command fields do not match its operation")

    @property
    def is_prekey_query(self) -> bool:
        """True for a ``keys`` command that changes nothing (a status query)."""
        return self.op == OP_PREKEYS and not self.static and not self.otk and not self.replace


_CLIENT_FRAMES: dict[str, type[ClientFrame]] = {
    cls.TYPE: cls
    for cls in (RequestChallenge, SignedOwnerCommand, Deposit, Ack, Unsubscribe, FetchBundle)
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
    stored and need no ack), ``ts`` the relay's receive time in whole seconds.
    """

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("seq", "seq", Int(0, 2**63 - 1)),
        Field("eid", "eid", _ENVELOPE_ID),
        Field("ts", "ts", Int()),
        Field("flags", "flags", _FLAGS),
        Field("ct", "ct", _CT),
        Field("fc", "fc", _FC, required=False),
    )
    seq: int
    eid: bytes
    ts: int
    flags: int
    ct: bytes
    fc: bytes | None = None


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
    one-time item (absent when none is left or the mailbox's hourly allowance is used up)."""

    TYPE: ClassVar[str] = "bundle"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _REQ_ID),
        Field("static", "static", _PREKEY_STATIC),
        Field("otk", "otk", _PREKEY_ITEM, required=False),
    )
    id: int
    static: bytes
    otk: bytes | None = None


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
