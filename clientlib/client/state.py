"""The client's persistent records, as kept in the keystore (protocol.md §23.3).

Each record is a msgpack map with short keys behind a one-byte record version, stored as a
keystore value. The keystore is encrypted and authenticated, so these decoders guard against
our own bugs and version skew, not against an attacker; a record that does not decode is a
:class:`~clientlib.keystore.CorruptKeystore`.

Namespaces::

    meta       b"identity" -> identity seed (32)      b"relay" -> relay base URL (UTF-8)
               b"history-key" -> 32 bytes             b"next-key-id" -> u32 big-endian
               b"name" -> our display name (UTF-8)    b"state-version" -> 0x01
    prekeys    kind(1) || key_id(4)  -> PreKeyPair.private_bytes()
    addresses  address id (16)       -> AddressRecord
    contacts   contact id (16)       -> ContactRecord
    requests   request id (16)       -> RequestRecord
    outbox     sequence (8, BE)      -> OutboxRecord      (flushed in key order)
    recall     contact (16) || message id (16) || eid (16) -> msgpack [relay, sid, sent at]
               (an envelope of a text message we sent, kept for an unsend's recall for
               RECALL_KEEP_S; the secret is derived from meta b"recall-key", protocol.md §22.13)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self, TypeVar

import msgpack

from clientlib.errors import WireError
from clientlib.keystore.errors import CorruptKeystore
from clientlib.wire.codec import unpack_strict

__all__ = [
    "STATE_VERSION",
    "AddressRecord",
    "ContactRecord",
    "OutboxRecord",
    "RequestRecord",
]

STATE_VERSION = 1
_RECORD_VERSION = 1
#: How many recent envelope ids / handshake hashes a mailbox remembers for deduplication.
SEEN_LIMIT = 512

_R = TypeVar("_R", bound="_Record")


class _Record:
    """A mutable record with a msgpack encoding (field name -> value)."""

    __slots__ = ()
    _CHECKS: ClassVar[dict[str, Callable[[Any], bool]]] = {}

    def to_bytes(self) -> bytes:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        packed: bytes = msgpack.packb(data, use_bin_type=True)
        return bytes((_RECORD_VERSION,)) + packed

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        try:
            if not raw or raw[0] != _RECORD_VERSION:
                raise ValueError
            data = unpack_strict(raw[1:])
            if type(data) is not dict:
                raise ValueError
            names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
            if set(data) - names:
                raise ValueError
            for name, check in cls._CHECKS.items():
                if name in data and not check(data[name]):
                    raise ValueError
            return cls(**data)
        except (WireError, ValueError, TypeError):
            raise CorruptKeystore(f"a {cls.__name__} in the keystore does not decode") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<secret>)"


def _b(n: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is bytes and len(v) == n


def _opt_b(n: int) -> Callable[[Any], bool]:
    return lambda v: v is None or (type(v) is bytes and len(v) == n)


def _opt_str() -> Callable[[Any], bool]:
    return lambda v: v is None or type(v) is str


def _list_b() -> Callable[[Any], bool]:
    return lambda v: type(v) is list and all(type(x) is bytes for x in v)


@dataclass(slots=True, repr=False, eq=False)
class AddressRecord(_Record):
    """A contact address: a mailbox that accepts contact requests, with hosted prekeys."""

    _CHECKS: ClassVar[dict[str, Callable[[Any], bool]]] = {
        "rid": _b(16),
        "sid": _b(16),
        "owner": _b(32),
        "key": _b(32),
        "seen": _list_b(),
        "relay": _opt_str(),
    }
    rid: bytes
    sid: bytes
    owner: bytes  # Ed25519 seed of the mailbox owner key (not the identity)
    key: bytes  # the address key k of the invitation
    spk: int  # key id of the current signed X25519 prekey
    lr: int  # key id of the ML-KEM last-resort prekey
    items: list[int] = field(default_factory=list)  # key ids of uploaded one-time items
    left: int = 0  # one-time items the relay held at our last upload or status query
    created: int = 0
    seen: list[bytes] = field(default_factory=list)  # handshake hashes of requests seen
    eids: list[bytes] = field(default_factory=list)  # recent envelope ids
    bnd: list[int] | None = None  # boundaries [size, att, day, pow] as last set at the relay
    #: The relay the address lives on (normal form); None: the home relay (protocol.md
    #: §27.1: a client may receive on several relays, one address or more on each).
    relay: str | None = None


@dataclass(slots=True, repr=False, eq=False)
class ContactRecord(_Record):
    """A contact with its session and the two pairwise mailboxes."""

    _CHECKS: ClassVar[dict[str, Callable[[Any], bool]]] = {
        "identity": _b(32),
        "rid": _b(16),
        "sid": _b(16),
        "owner": _b(32),
        "send": _opt_b(16),
        "eids": _list_b(),
        "sendcap": _opt_b(32),
        "relay": _opt_str(),
        "rr": _opt_str(),
    }
    name: str
    state: str  # "pending" | "accepted"
    identity: bytes  # the contact's identity public key
    session: bytes  # SessionRecord.to_bytes()
    rid: bytes  # our receive mailbox for this contact
    sid: bytes
    owner: bytes
    send: bytes | None  # the contact's mailbox send id, once known
    verified: bool = False
    created: int = 0
    eids: list[bytes] = field(default_factory=list)
    mycap: bytes = b""  # the send capability we registered on our mailbox for this contact
    sendcap: bytes | None = None  # the capability the contact registered for us
    blocked: bool = False
    settings: list[int] = field(default_factory=lambda: [1, 1, 1])  # ours: receipts, typing, media
    peer: list[int] | None = None  # the contact's, as last received
    # (settings and peer gain a 4th entry, delivery receipts, once set; absent: 1)
    dis: int = 0  # disappearing-message timer of the conversation, seconds (0: off)
    disv: int = 0  # its change counter (protocol.md §22.10)
    #: The relay the contact receives on (``send`` lives there), normal form; None: ours
    #: (protocol.md §27.1, revision 11).
    relay: str | None = None
    #: Session offers (protocol.md §24.4): ``ts`` of the last one we sent or accepted, and
    #: the key ids ``[spk, last-resort]`` of ours still unanswered. ``session`` is empty
    #: while a restored contact waits for the answer.
    rst: int = 0
    ofr: list[int] | None = None
    #: Linked devices (protocol.md §24.5-§24.7). ``me``: this record is our own other
    #: devices (identity = ours; hidden from the contact list). ``devs``: sessions with
    #: further devices of the contact, each ``[did, send, cap, session, rst]``. ``mdid``:
    #: the device behind the main session, once it said so; ``off``: that device was
    #: removed from the contact's list (nothing more goes to or is taken from it).
    #: ``dl``: the contact's latest verified device list.
    me: bool = False
    devs: list[list[Any]] = field(default_factory=list)
    mdid: bytes | None = None
    off: bool = False
    dl: bytes | None = None
    #: The attachment capability hash (protocol.md §4.8, revision 8) is registered on our
    #: mailbox for this contact (media on); False: not (yet) or removed (media off).
    hatt: bool = False
    #: The relay our receive mailbox ``rid`` is on (normal form); None: the home relay
    #: (protocol.md §27.1; an accepted request's mailbox is on its address's relay).
    rr: str | None = None


@dataclass(slots=True, repr=False, eq=False)
class RequestRecord(_Record):
    """An incoming request: the session is already established (the one-time prekeys are
    consumed), but nothing is sent and no mailbox exists until it is accepted."""

    _CHECKS: ClassVar[dict[str, Callable[[Any], bool]]] = {
        "address": _b(16),
        "reply": _b(16),
        "identity": _b(32),
        "ev": lambda v: v is None or type(v) is bytes,
        "relay": _opt_str(),
    }
    address: bytes
    identity: bytes
    session: bytes
    reply: bytes
    name: str | None
    intro: str | None
    received: int
    cap: bytes = b""  # the requester's capability for its mailbox
    hdl: bytes | None = None  # the requester's handle as the relay delivered it (for bans)
    #: ReportEvidence of the request (its content under the commitment, fk, fc, the relay's
    #: ft/fx, both identities, the AMF signature), for Client.report_request; None for
    #: requests stored before revision 5 (not reportable).
    ev: bytes | None = None
    #: The relay ``reply`` is on (the request's ``relay`` field), normal form; None: ours.
    relay: str | None = None


@dataclass(slots=True, repr=False, eq=False)
class OutboxRecord(_Record):
    """A sealed envelope waiting to be deposited; retried with the same ``eid``.

    ``sid`` is None while the contact has not accepted yet (the destination is unknown);
    ``msg`` is the message id for delivery state, if the envelope carries a text message.
    ``pt`` is the content of a message written while the contact request is pending: it is
    sealed only when the acceptance arrives (as a ratchet message, not a 2,048-byte prekey
    message that would link the new mailbox to the request, protocol.md §22.2 step 4), and
    until then ``ct`` is empty and ``fc`` zero. The keystore encrypts it at rest.
    """

    _CHECKS: ClassVar[dict[str, Callable[[Any], bool]]] = {
        "contact": _b(16),
        "eid": _b(16),
        "fc": _b(32),
        "sid": _opt_b(16),
        "cap": _opt_b(32),
        "hdl": _opt_b(16),
        "pt": lambda v: v is None or type(v) is bytes,
        "relay": _opt_str(),
        "rm": _opt_b(16),
        "att": lambda v: v is None or (type(v) is list and all(type(x) is bytes for x in v)),
    }
    contact: bytes
    eid: bytes
    ct: bytes
    fc: bytes
    sid: bytes | None
    msg: bytes | None = None
    cap: bytes | None = None  # send capability for a pairwise mailbox
    hdl: bytes | None = None  # requester handle: set on contact requests (proof of work too)
    pw: int = -1  # the address's proof-of-work bits when queued (-1: ask the relay)
    pt: bytes | None = None  # content to seal once the contact accepts (see above)
    relay: str | None = None  # the relay ``sid`` is on (normal form); None: ours (§27.1)
    rm: bytes | None = None  # the text message it carries, for a recall (§5.10, §22.13)
    att: list[bytes] | None = None  # blob ids the envelope references (``att``, §5.9)


def remember(seen: list[bytes], item: bytes, limit: int = SEEN_LIMIT) -> None:
    """Append ``item`` to a bounded most-recent list (oldest dropped)."""
    seen.append(item)
    if len(seen) > limit:
        del seen[: len(seen) - limit]


def decode_all(cls: type[_R], items: list[tuple[bytes, bytes]]) -> dict[bytes, _R]:
    return {k: cls.from_bytes(v) for k, v in items}
