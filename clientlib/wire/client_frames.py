"""The frames a client sends to the relay (protocol.md §3, §4).

They are commands, named as imperatives (``Deposit``, ``Ack``); the ``t`` field names the frame
on the wire. Relay-to-client frames have a separate registry
(:mod:`clientlib.wire.relay_frames`), so the same ``t`` may mean a different frame there.
"""

from __future__ import annotations

from typing import ClassVar

from clientlib.wire.codec import (
    Bin,
    Int,
    ListOf,
    Str,
    Struct,
    Text,
    decode_map,
    wire,
    wire_struct,
)
from clientlib.wire.limits import (
    ATTACHMENT_ID_SIZE,
    CAPABILITY_SIZE,
    ED25519_SIGNATURE_SIZE,
    FANOUT_ENTRY_SIZE,
    MAX_ACK_BATCH,
    MAX_ATTACHMENT_REFS,
    MAX_FRAME_SIZE,
    MAX_OWNER_COMMAND_SIZE,
    POW_NONCE_SIZE,
    RECALL_SECRET_SIZE,
)
from clientlib.wire.shared import (
    _CT,
    _ENVELOPE_ID,
    _FC,
    _FLAGS,
    _HANDLE,
    _MAILBOX_ID,
    _REQ_ID,
    _SEQ,
    OWNER_OPS,
    _dispatch,
)
from clientlib.wire.version import SUPPORTED_VERSIONS, VersionRange

__all__ = [
    "Ack",
    "ClientFrame",
    "CreateBlob",
    "Deposit",
    "Fanout",
    "FetchBundle",
    "GetBoundaries",
    "GetModerationKeys",
    "GetPow",
    "GetRouteKeys",
    "Recall",
    "RequestChallenge",
    "Route",
    "SignedOwnerCommand",
    "Unsubscribe",
    "decode_client_frame",
]


class ClientFrame(Struct):
    """Base of frames a client sends."""

    __slots__ = ()


@wire_struct
class RequestChallenge(ClientFrame):
    """Ask for a single-use challenge for one owner operation on one mailbox.

    ``rid`` is absent for ``create`` (the mailbox does not exist yet) and required for every
    other operation; the relay refuses either mistake as MALFORMED (protocol.md §3.1).
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
    ignored. ``ttl`` (revision 14, §5.7): the envelope's own lifetime in seconds, for
    disappearing messages; the relay keeps it for the smaller of ``ttl`` and its envelope TTL.
    ``rc`` (revision 15, §5.10): the recall hash ``SHA-256("blindrelay/v1/recall" || 0x00 ||
    rs)``; presenting ``rs`` in a :class:`Recall` deletes the envelope while it is stored.
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
    ttl: int | None = wire(Int(1, 2**32 - 1), default=None)
    rc: bytes | None = wire(Bin(32), default=None)


@wire_struct
class Recall(ClientFrame):
    """Delete the envelope ``eid`` of the mailbox with send id ``sid`` if it is still stored
    (not acknowledged, not expired) and was deposited with ``rc = SHA-256("blindrelay/v1/recall"
    || 0x00 || rs)`` (protocol.md §5.10, revision 15). Unauthenticated like a deposit; the
    reply is ``ok`` whether or not anything was deleted."""

    TYPE: ClassVar[str] = "recall"
    id: int = wire(_REQ_ID)
    sid: bytes = wire(_MAILBOX_ID)
    eid: bytes = wire(_ENVELOPE_ID)
    rs: bytes = wire(Bin(RECALL_SECRET_SIZE))

    def __repr__(self) -> str:
        return f"Recall(id={self.id}, <redacted>)"


@wire_struct
class Fanout(ClientFrame):
    """Deposit one envelope into many ``pair`` mailboxes (protocol.md §26.1, revision 9).

    ``to`` is the concatenation of entries ``sid (16) || cap (32)``, at most
    :data:`~clientlib.wire.limits.MAX_FANOUT` of them, no send id twice; ``ct`` is at most
    :data:`~clientlib.wire.limits.MAX_FANOUT_CT`. The relay enqueues the envelope for each
    entry in its own atomic step (idempotent by ``(mailbox, eid)``, quota per mailbox) and
    answers :class:`~clientlib.wire.relay_frames.FanoutDone` with the refused entries.
    """

    TYPE: ClassVar[str] = "fan"
    id: int = wire(_REQ_ID)
    eid: bytes = wire(_ENVELOPE_ID)
    flags: int = wire(_FLAGS)
    ct: bytes = wire(_CT)
    to: bytes = wire(Bin(min=FANOUT_ENTRY_SIZE, max=MAX_FRAME_SIZE))
    fc: bytes | None = wire(_FC, default=None)

    def entries(self) -> list[tuple[bytes, bytes]]:
        """``to`` as ``(sid, cap)`` pairs (``MALFORMED`` is the caller's check of the length)."""
        to, n = self.to, FANOUT_ENTRY_SIZE
        return [(to[i : i + 16], to[i + 16 : i + n]) for i in range(0, len(to) - n + 1, n)]


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
class GetModerationKeys(ClientFrame):
    """Ask for the relay's moderator keys ``(kid, M_kid)`` (protocol.md §4.11, §15.5.3;
    revision 5). Unauthenticated, like :class:`FetchBundle`; answered by
    :class:`~clientlib.wire.relay_frames.ModerationKeys`."""

    TYPE: ClassVar[str] = "mkeys?"
    id: int = wire(_REQ_ID)


@wire_struct
class GetPow(ClientFrame):
    """Ask for a single-use proof-of-work nonce for the contact address ``sid`` (§4.9)."""

    TYPE: ClassVar[str] = "pow?"
    id: int = wire(_REQ_ID)
    sid: bytes = wire(_MAILBOX_ID)


#: The largest blob a client may announce (2^40 bytes); relays announce lower limits.
MAX_BLOB_SIZE = 2**40
#: Downloads a blob may allow (protocol.md §5.9); absent: unlimited until it expires.
MAX_BLOB_DOWNLOADS = 255


@wire_struct
class CreateBlob(ClientFrame):
    """Start an upload of ``size`` ciphertext bytes for the mailbox ``sid`` (protocol.md §5.9,
    revision 8; HTTP only: ``POST /v1/blob``). ``cap`` (a ``pair`` mailbox) or ``hdl`` (a
    contact address) as for a deposit; ``ttl``: lifetime in seconds (at most the envelope
    TTL, the default); ``dl``: how many downloads the blob allows (1: view-once)."""

    TYPE: ClassVar[str] = "blob+"
    id: int = wire(_REQ_ID)
    sid: bytes = wire(_MAILBOX_ID)
    size: int = wire(Int(1, MAX_BLOB_SIZE))
    cap: bytes | None = wire(Bin(CAPABILITY_SIZE), default=None)
    hdl: bytes | None = wire(_HANDLE, default=None)
    ttl: int | None = wire(Int(1, 2**32 - 1), default=None)
    dl: int | None = wire(Int(1, MAX_BLOB_DOWNLOADS), default=None)


#: The largest sealed packet a ``route`` frame may carry (protocol.md §27.3): any frame of
#: the maximum size, sealed (77 bytes), inside a ``route`` frame that fits one frame.
MAX_ROUTE_PACKET = MAX_FRAME_SIZE - 512
#: Packet header and tag: version, key id, ephemeral key, nonce, AEAD tag.
MIN_ROUTE_PACKET = 1 + 4 + 32 + 24 + 16
#: A relay URL (protocol.md §27.1) on the wire.
_RELAY_URL = Text(255)


@wire_struct
class GetRouteKeys(ClientFrame):
    """Ask for a relay's route keys (protocol.md §27.3, revision 11): this relay's own, or
    with ``dst`` those of the relay at that URL, fetched by this relay."""

    TYPE: ClassVar[str] = "rkeys?"
    id: int = wire(_REQ_ID)
    dst: str | None = wire(_RELAY_URL, default=None)


@wire_struct
class Route(ClientFrame):
    """Forward a packet sealed to the route key of the relay ``dst`` (§27.3); ``pwc``: the
    proof-of-work counter when this relay asks for one (``fpow`` in ``rkeys``)."""

    TYPE: ClassVar[str] = "route"
    id: int = wire(_REQ_ID)
    dst: str = wire(_RELAY_URL)
    pkt: bytes = wire(Bin(min=MIN_ROUTE_PACKET, max=MAX_ROUTE_PACKET))
    pwc: int | None = wire(Int(0, 2**64 - 1), default=None)


_CLIENT_FRAMES: dict[str, type[ClientFrame]] = {
    cls.TYPE: cls
    for cls in (
        RequestChallenge,
        SignedOwnerCommand,
        Deposit,
        Recall,
        Fanout,
        Ack,
        Unsubscribe,
        FetchBundle,
        GetBoundaries,
        GetModerationKeys,
        GetPow,
        CreateBlob,
        GetRouteKeys,
        Route,
    )
}


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
