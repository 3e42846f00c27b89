"""Group cryptography (protocol.md §26.3-§26.6, revision 9): the membership log signed by
admins, epoch secrets, sender-key chains and the group envelope. Sans-IO: randomness is
passed in, no clock, no storage.

Pieces, each a value or a small state machine:

* :class:`Member` and :class:`LogEntry`: the membership log. Each entry names its
  predecessor's hash and is signed by a per-group Ed25519 key; :meth:`GroupState.apply`
  checks the signer's authority (owner, admin, the member itself for ``leave``) before it
  changes anything.
* Epoch derivations (:func:`epoch_capability`, :func:`control_key`): the mailbox capability
  of an epoch and the key of control messages, from the epoch secret.
* :class:`SenderChain` (ours) and :class:`ReceiverChain` (a peer's): the sender key, ratcheted
  forward per message; a bounded store of skipped keys; a replayed index is refused.
* :func:`seal_message` / :func:`open_message`, :func:`seal_control` /
  :func:`open_control`, :func:`seal_direct` / :func:`open_direct`: the three group envelope
  types, all signed by the sender's per-group key.

Errors: :class:`GroupError` (a forged, out-of-order or unauthorised change; a replayed or
unreadable message) carries a short reason and never secret bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import msgpack

from clientlib.crypto.primitives import (
    aead_decrypt,
    aead_encrypt,
    ed25519_expand_seed,
    ed25519_public_from_seed,
    ed25519_sign,
    ed25519_verify,
    hkdf,
    hmac_sha256,
    sha256,
    validate_ed25519_public,
    validate_x25519_public,
    x25519,
    x25519_public_from_private,
)
from clientlib.errors import DecryptionError, KeyValidationError, MessagingError

__all__ = [
    "GROUP_VERSION",
    "MAX_SKIP",
    "ROLES",
    "GroupError",
    "GroupKeys",
    "GroupSettings",
    "GroupState",
    "LogEntry",
    "Member",
    "ReceiverChain",
    "SenderChain",
    "control_key",
    "epoch_capability",
    "open_control",
    "open_direct",
    "open_message",
    "parse_header",
    "seal_control",
    "seal_direct",
    "seal_message",
]

GROUP_VERSION: Final = 1
TYPE_MESSAGE: Final = 1
TYPE_CONTROL: Final = 2
TYPE_DIRECT: Final = 3
ROLES: Final = ("owner", "admin", "member")
#: Message keys one receiver chain may skip ahead (reordering) and keep (bounded memory).
MAX_SKIP: Final = 1000

LOG_CONTEXT: Final = b"blindrelay/v1/group/log\x00"
MESSAGE_CONTEXT: Final = b"blindrelay/v1/group/msg\x00"
CONTROL_CONTEXT: Final = b"blindrelay/v1/group/ctl\x00"
DIRECT_CONTEXT: Final = b"blindrelay/v1/group/direct\x00"
CAP_INFO: Final = b"blindrelay/v1/group/cap"
CONTROL_INFO: Final = b"blindrelay/v1/group/ctl-key"
MESSAGE_INFO: Final = b"blindrelay/v1/group/message-key"
DIRECT_INFO: Final = b"blindrelay/v1/group/direct-key"
GROUP_ID_SIZE: Final = 16
_ZERO32: Final = bytes(32)

RNG = Callable[[int], bytes]


class GroupError(MessagingError):
    """A group change or message that must be dropped (forged, unauthorised, replayed,
    reordered beyond the window, unreadable). ``reason`` is safe to show and log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _unpack_canonical(data: bytes) -> Any:
    """Decode msgpack and require the canonical (smallest) encoding: re-encoding gives the
    same bytes. Anything else is a :class:`GroupError`."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise GroupError("undecodable") from None
    if _pack(obj) != data:
        raise GroupError("not canonical")
    return obj


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupKeys:
    """A member's per-group keys: Ed25519 seed ``sign_seed`` (signs log entries and
    messages) and X25519 private ``dh_private`` (receives welcomes and rekeys)."""

    sign_seed: bytes = field(repr=False)
    dh_private: bytes = field(repr=False)

    @classmethod
    def generate(cls, rng: RNG) -> GroupKeys:
        """Two draws of 32 bytes: the signing seed first, then the X25519 private key."""
        return cls(sign_seed=rng(32), dh_private=rng(32))

    @property
    def gpk(self) -> bytes:
        return ed25519_public_from_seed(self.sign_seed)

    @property
    def xpk(self) -> bytes:
        return x25519_public_from_private(self.dh_private)

    def sign(self, context: bytes, data: bytes) -> bytes:
        return ed25519_sign(ed25519_expand_seed(self.sign_seed), context + data)


def _verify(gpk: bytes, context: bytes, data: bytes, sig: bytes) -> None:
    try:
        ed25519_verify(gpk, context + data, sig)
    except (DecryptionError, KeyValidationError, ValueError):
        raise GroupError("bad signature") from None


# --- the membership log ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One member record: identity key ``ik`` (Ed25519, the pairwise identity), per-group
    keys ``gpk``/``xpk``, the send id ``sid`` of its group mailbox, ``role`` and the display
    ``name`` it chose."""

    ik: bytes
    gpk: bytes
    xpk: bytes
    sid: bytes
    role: str
    name: str

    def encode(self) -> list[Any]:
        return [self.ik, self.gpk, self.xpk, self.sid, self.role, self.name]

    @classmethod
    def decode(cls, obj: Any) -> Member:
        if not isinstance(obj, list) or len(obj) != 6:
            raise GroupError("bad member")
        ik, gpk, xpk, sid, role, name = obj
        if not (
            isinstance(ik, bytes)
            and isinstance(gpk, bytes)
            and isinstance(xpk, bytes)
            and isinstance(sid, bytes)
            and isinstance(name, str)
            and len(sid) == 16
            and role in ROLES
            and len(name.encode()) <= 64
        ):
            raise GroupError("bad member")
        try:
            validate_ed25519_public(ik)
            validate_ed25519_public(gpk)
            validate_x25519_public(xpk)
        except (DecryptionError, KeyValidationError, ValueError):
            raise GroupError("bad member key") from None
        return cls(ik=ik, gpk=gpk, xpk=xpk, sid=sid, role=role, name=name)


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """``post``: who may send (``all`` or ``admins``); ``media``: files allowed (0/1);
    ``ttl``: disappearing timer in seconds (0: off)."""

    post: str = "all"
    media: int = 1
    ttl: int = 0

    def encode(self) -> list[Any]:
        return [self.post, self.media, self.ttl]

    @classmethod
    def decode(cls, obj: Any) -> GroupSettings:
        if (
            not isinstance(obj, list)
            or len(obj) != 3
            or obj[0] not in ("all", "admins")
            or obj[1] not in (0, 1)
            or not isinstance(obj[2], int)
            or not 0 <= obj[2] <= 2**32 - 1
        ):
            raise GroupError("bad settings")
        return cls(post=obj[0], media=obj[1], ttl=obj[2])


#: Entry kinds and the shape of their body.
KINDS: Final = ("create", "add", "remove", "leave", "role", "set")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One signed membership change (protocol.md §26.3).

    ``body`` by ``kind``: ``create`` ``[name, settings, member]``; ``add`` ``[member]``;
    ``remove`` and ``leave`` ``[gpk]``; ``role`` ``[gpk, role]``; ``set`` ``[settings]``.
    ``epoch`` is the group's epoch once the entry is applied (``remove`` and ``leave`` start
    a new one).
    """

    gid: bytes
    seq: int
    prev: bytes
    epoch: int
    kind: str
    body: tuple[Any, ...]
    signer: bytes
    sig: bytes = field(default=b"", repr=False)

    def signed_bytes(self) -> bytes:
        return _pack(
            [
                GROUP_VERSION,
                self.gid,
                self.seq,
                self.prev,
                self.epoch,
                self.kind,
                list(self.body),
                self.signer,
            ]
        )

    def encode(self) -> bytes:
        """``msgpack([signed_bytes, sig])``: what travels and what the next ``prev`` hashes."""
        return _pack([self.signed_bytes(), self.sig])

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())

    def signed_by(self, keys: GroupKeys) -> LogEntry:
        return replace(self, sig=keys.sign(LOG_CONTEXT, self.signed_bytes()))

    @classmethod
    def decode(cls, data: bytes) -> LogEntry:
        outer = _unpack_canonical(data)
        if (
            not isinstance(outer, list)
            or len(outer) != 2
            or not isinstance(outer[0], bytes)
            or not isinstance(outer[1], bytes)
        ):
            raise GroupError("bad log entry")
        inner = _unpack_canonical(outer[0])
        if not isinstance(inner, list) or len(inner) != 8 or inner[0] != GROUP_VERSION:
            raise GroupError("bad log entry")
        _, gid, seq, prev, epoch, kind, body, signer = inner
        if not (
            isinstance(gid, bytes)
            and len(gid) == GROUP_ID_SIZE
            and isinstance(seq, int)
            and isinstance(epoch, int)
            and isinstance(prev, bytes)
            and len(prev) == 32
            and kind in KINDS
            and isinstance(body, list)
            and isinstance(signer, bytes)
            and len(signer) == 32
        ):
            raise GroupError("bad log entry")
        return cls(gid, seq, prev, epoch, kind, tuple(body), signer, outer[1])


@dataclass(slots=True)
class GroupState:
    """The group as the log says: members by ``gpk`` (in join order), settings, epoch and
    the head (hash of the last entry). Built only by :meth:`apply`."""

    gid: bytes
    name: str = ""
    members: dict[bytes, Member] = field(default_factory=dict)
    settings: GroupSettings = field(default_factory=GroupSettings)
    epoch: int = 0
    seq: int = -1
    head: bytes = _ZERO32

    def role_of(self, gpk: bytes) -> str | None:
        m = self.members.get(gpk)
        return m.role if m is not None else None

    def admins(self) -> list[Member]:
        return [m for m in self.members.values() if m.role in ("owner", "admin")]

    def next_entry(self, kind: str, body: Sequence[Any], signer: GroupKeys) -> LogEntry:
        """The signed entry that would follow the head (apply it to take effect)."""
        epoch = self.epoch + (1 if kind in ("remove", "leave") else 0)
        entry = LogEntry(
            gid=self.gid,
            seq=self.seq + 1,
            prev=self.head,
            epoch=epoch,
            kind=kind,
            body=tuple(body),
            signer=signer.gpk,
        )
        return entry.signed_by(signer)

    def apply(self, entry: LogEntry) -> None:
        """Check ``entry`` against the state and apply it; on any error nothing changes.

        Raises:
            GroupError: another group, not the next entry (``seq``/``prev``), a wrong epoch, a
                bad signature, a signer without the authority, or a body that does not fit.
        """
        if entry.gid != self.gid:
            raise GroupError("another group")
        if entry.seq != self.seq + 1 or entry.prev != self.head:
            raise GroupError("not the next entry")
        _verify(entry.signer, LOG_CONTEXT, entry.signed_bytes(), entry.sig)
        new_epoch = self.epoch + (1 if entry.kind in ("remove", "leave") else 0)
        if entry.seq == 0:
            new_epoch = 0
        if entry.epoch != new_epoch:
            raise GroupError("wrong epoch")
        signer_role = self.role_of(entry.signer)
        body = entry.body
        members = dict(self.members)
        name, settings = self.name, self.settings
        match entry.kind:
            case "create":
                if entry.seq != 0 or len(body) != 3 or not isinstance(body[0], str):
                    raise GroupError("bad create")
                owner = Member.decode(body[2])
                if owner.role != "owner" or owner.gpk != entry.signer:
                    raise GroupError("bad create")
                name, settings = body[0], GroupSettings.decode(body[1])
                members = {owner.gpk: owner}
            case "add":
                if signer_role not in ("owner", "admin") or len(body) != 1:
                    raise GroupError("not an admin")
                new = Member.decode(body[0])
                if new.gpk in members or new.role == "owner":
                    raise GroupError("bad add")
                if any(m.sid == new.sid for m in members.values()):
                    raise GroupError("bad add")
                members[new.gpk] = new
            case "remove":
                if signer_role not in ("owner", "admin") or len(body) != 1:
                    raise GroupError("not an admin")
                target = self.role_of(body[0]) if isinstance(body[0], bytes) else None
                if target is None or target == "owner" or body[0] == entry.signer:
                    raise GroupError("bad remove")
                if target == "admin" and signer_role != "owner":
                    raise GroupError("only the owner removes an admin")
                del members[body[0]]
            case "leave":
                if signer_role is None or body != (entry.signer,) or signer_role == "owner":
                    raise GroupError("bad leave")
                del members[entry.signer]
            case "role":
                if signer_role != "owner" or len(body) != 2 or body[1] not in ("admin", "member"):
                    raise GroupError("only the owner sets roles")
                target = self.role_of(body[0]) if isinstance(body[0], bytes) else None
                if target is None or target == "owner":
                    raise GroupError("bad role")
                members[body[0]] = replace(members[body[0]], role=body[1])
            case "set":
                if signer_role not in ("owner", "admin") or len(body) != 1:
                    raise GroupError("not an admin")
                settings = GroupSettings.decode(body[0])
            case _:  # pragma: no cover - LogEntry.decode checks the kind
                raise GroupError("unknown kind")
        if entry.seq == 0 and entry.kind != "create":
            raise GroupError("a log starts with create")
        self.name, self.settings, self.members = name, settings, members
        self.epoch, self.seq, self.head = new_epoch, entry.seq, entry.hash

    @classmethod
    def from_log(cls, gid: bytes, entries: Sequence[LogEntry]) -> GroupState:
        state = cls(gid=gid)
        for entry in entries:
            state.apply(entry)
        return state


# --- epochs -----------------------------------------------------------------------------------


def epoch_capability(epoch_secret: bytes, sid: bytes) -> bytes:
    """``cap(e, sid) = HKDF(es_e, salt = 32 zero bytes, info = CAP_INFO || sid, 32)``: the
    send capability of the group mailbox ``sid`` during the epoch of ``epoch_secret``."""
    return hkdf(epoch_secret, salt=_ZERO32, info=CAP_INFO + sid, length=32)


def control_key(epoch_secret: bytes, gid: bytes) -> bytes:
    """The AEAD key of control messages of the epoch: ``HKDF(es_e, info = CONTROL_INFO ||
    gid)``."""
    return hkdf(epoch_secret, salt=_ZERO32, info=CONTROL_INFO + gid, length=32)


# --- sender keys ------------------------------------------------------------------------------


def _chain_step(ck: bytes) -> tuple[bytes, bytes]:
    """``(mk, ck') = (HMAC(ck, 0x01), HMAC(ck, 0x02))`` (the pairwise chain step, §12)."""
    return hmac_sha256(ck, b"\x01"), hmac_sha256(ck, b"\x02")


def _message_key(mk: bytes) -> tuple[bytes, bytes]:
    okm = hkdf(mk, salt=_ZERO32, info=MESSAGE_INFO, length=56)
    return okm[:32], okm[32:]


@dataclass(slots=True)
class SenderChain:
    """Our sender key for one epoch: chain ``gen`` (a new one per epoch and on demand), the
    chain key ``ck`` at index ``index``. Each :meth:`step` hands out one message key and
    forgets it."""

    epoch: int
    gen: int
    index: int
    ck: bytes = field(repr=False)

    @classmethod
    def new(cls, epoch: int, gen: int, rng: RNG) -> SenderChain:
        return cls(epoch=epoch, gen=gen, index=0, ck=rng(32))

    def step(self) -> tuple[int, bytes]:
        mk, self.ck = _chain_step(self.ck)
        i = self.index
        self.index += 1
        return i, mk

    def distribution(self) -> list[Any]:
        """``[epoch, gen, index, ck]``: what peers need to read from ``index`` on."""
        return [self.epoch, self.gen, self.index, self.ck]


@dataclass(slots=True)
class ReceiverChain:
    """A peer's sender key as we hold it: the next index ``index`` with chain key ``ck``, and
    the keys of skipped indexes (at most :data:`MAX_SKIP`)."""

    epoch: int
    gen: int
    index: int
    ck: bytes = field(repr=False)
    skipped: dict[int, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def from_distribution(cls, obj: Any) -> ReceiverChain:
        if (
            not isinstance(obj, list)
            or len(obj) != 4
            or not all(isinstance(x, int) and 0 <= x < 2**32 for x in obj[:3])
            or not isinstance(obj[3], bytes)
            or len(obj[3]) != 32
        ):
            raise GroupError("bad sender key")
        return cls(epoch=obj[0], gen=obj[1], index=obj[2], ck=obj[3])

    def key_for(self, i: int) -> bytes:
        """The message key of index ``i``, consumed (a second call for ``i`` fails).

        Raises:
            GroupError: ``i`` was used or lies before the chain we hold (replay), or more than
                :data:`MAX_SKIP` ahead.
        """
        if i < self.index:
            mk = self.skipped.pop(i, None)
            if mk is None:
                raise GroupError("replayed or too old")
            return mk
        if i - self.index > MAX_SKIP:
            raise GroupError("too far ahead")
        ck = self.ck
        found = b""
        pending: dict[int, bytes] = {}
        for j in range(self.index, i + 1):
            mk, ck = _chain_step(ck)
            if j == i:
                found = mk
            else:
                pending[j] = mk
        self.skipped.update(pending)
        while len(self.skipped) > MAX_SKIP:
            del self.skipped[min(self.skipped)]
        self.ck, self.index = ck, i + 1
        return found

    def peek(self, i: int) -> tuple[bytes, ReceiverChain]:
        """The key of ``i`` and the chain as it would be after using it (commit by keeping
        the returned chain only once the message authenticated)."""
        copy = ReceiverChain(self.epoch, self.gen, self.index, self.ck, dict(self.skipped))
        return copy.key_for(i), copy


# --- envelopes --------------------------------------------------------------------------------
#
# Every group envelope starts ``version (1) || type (1) || gid (16)``; then by type:
#   1 message: epoch u32 || gpk (32) || gen u32 || index u32 || ct || sig (64)
#   2 control: epoch u32 || gpk (32) || nonce (24) || ct || sig (64)
#   3 direct:  gpk (32) || eph (32) || to (32) || ct || sig (64)
# ``sig`` = Ed25519(gpk, CONTEXT || every byte before it).

_MSG_HEAD = struct.Struct(">BB16sI32sII")
_CTL_HEAD = struct.Struct(">BB16sI32s24s")
_DIR_HEAD = struct.Struct(">BB16s32s32s32s")
_SIG = 64


def parse_header(data: bytes) -> tuple[int, bytes]:
    """``(type, gid)`` of a group envelope.

    Raises:
        GroupError: too short or another version.
    """
    if len(data) < 18 + _SIG or data[0] != GROUP_VERSION or data[1] not in (1, 2, 3):
        raise GroupError("not a group envelope")
    return data[1], data[2:18]


def seal_message(keys: GroupKeys, gid: bytes, chain: SenderChain, plaintext: bytes) -> bytes:
    """One group message under our sender chain (the chain steps once)."""
    i, mk = chain.step()
    key, nonce = _message_key(mk)
    head = _MSG_HEAD.pack(GROUP_VERSION, TYPE_MESSAGE, gid, chain.epoch, keys.gpk, chain.gen, i)
    body = head + aead_encrypt(key, nonce, plaintext, head)
    return body + keys.sign(MESSAGE_CONTEXT, body)


def message_sender(data: bytes) -> tuple[int, bytes, int, int]:
    """``(epoch, gpk, gen, index)`` of a type-1 envelope (before it is authenticated)."""
    if len(data) < _MSG_HEAD.size + 16 + _SIG or data[1] != TYPE_MESSAGE:
        raise GroupError("not a group message")
    _, _, _, epoch, gpk, gen, i = _MSG_HEAD.unpack_from(data)
    return epoch, gpk, gen, i


def open_message(data: bytes, chain: ReceiverChain) -> tuple[bytes, ReceiverChain]:
    """Verify and decrypt a type-1 envelope with the sender's chain.

    Returns:
        The plaintext and the chain to keep (the given one is unchanged).

    Raises:
        GroupError: bad signature, wrong chain, replayed index, undecryptable.
    """
    epoch, gpk, gen, i = message_sender(data)
    body, sig = data[:-_SIG], data[-_SIG:]
    _verify(gpk, MESSAGE_CONTEXT, body, sig)
    if (epoch, gen) != (chain.epoch, chain.gen):
        raise GroupError("unknown sender key")
    mk, after = chain.peek(i)
    key, nonce = _message_key(mk)
    head = body[: _MSG_HEAD.size]
    try:
        plaintext = aead_decrypt(key, nonce, body[_MSG_HEAD.size :], head)
    except DecryptionError:
        raise GroupError("undecryptable") from None
    return plaintext, after


def seal_control(
    keys: GroupKeys, gid: bytes, epoch: int, epoch_secret: bytes, plaintext: bytes, rng: RNG
) -> bytes:
    """A control message (log entries, sender keys) under the epoch's control key."""
    nonce = rng(24)
    head = _CTL_HEAD.pack(GROUP_VERSION, TYPE_CONTROL, gid, epoch, keys.gpk, nonce)
    body = head + aead_encrypt(control_key(epoch_secret, gid), nonce, plaintext, head)
    return body + keys.sign(CONTROL_CONTEXT, body)


def control_sender(data: bytes) -> tuple[int, bytes]:
    """``(epoch, gpk)`` of a type-2 envelope (before it is authenticated)."""
    if len(data) < _CTL_HEAD.size + 16 + _SIG or data[1] != TYPE_CONTROL:
        raise GroupError("not a control message")
    _, _, _, epoch, gpk, _ = _CTL_HEAD.unpack_from(data)
    return epoch, gpk


def open_control(data: bytes, epoch_secret: bytes) -> tuple[bytes, bytes]:
    """Verify and decrypt a type-2 envelope; returns ``(sender gpk, plaintext)``.

    Raises:
        GroupError: bad signature or undecryptable (wrong epoch secret).
    """
    _, gpk = control_sender(data)
    body, sig = data[:-_SIG], data[-_SIG:]
    _verify(gpk, CONTROL_CONTEXT, body, sig)
    _, _, gid, _, _, nonce = _CTL_HEAD.unpack_from(body)
    head = body[: _CTL_HEAD.size]
    try:
        plaintext = aead_decrypt(
            control_key(epoch_secret, gid), nonce, body[_CTL_HEAD.size :], head
        )
    except DecryptionError:
        raise GroupError("undecryptable") from None
    return gpk, plaintext


def _direct_key(shared: bytes, eph: bytes, to: bytes) -> bytes:
    return hkdf(shared, salt=eph + to, info=DIRECT_INFO, length=32)


def seal_direct(keys: GroupKeys, gid: bytes, to_xpk: bytes, plaintext: bytes, rng: RNG) -> bytes:
    """A message for one member's X25519 key ``to_xpk`` (welcome, rekey): a fresh ephemeral
    key per message, so the AEAD nonce is 24 zero bytes."""
    eph_private = rng(32)
    eph = x25519_public_from_private(eph_private)
    key = _direct_key(x25519(eph_private, to_xpk), eph, to_xpk)
    head = _DIR_HEAD.pack(GROUP_VERSION, TYPE_DIRECT, gid, keys.gpk, eph, to_xpk)
    body = head + aead_encrypt(key, bytes(24), plaintext, head)
    return body + keys.sign(DIRECT_CONTEXT, body)


def open_direct(data: bytes, keys: GroupKeys) -> tuple[bytes, bytes]:
    """Verify and decrypt a type-3 envelope for us; returns ``(sender gpk, plaintext)``.

    Raises:
        GroupError: not for our key, bad signature, undecryptable.
    """
    if len(data) < _DIR_HEAD.size + 16 + _SIG or data[1] != TYPE_DIRECT:
        raise GroupError("not a direct message")
    body, sig = data[:-_SIG], data[-_SIG:]
    _, _, _, gpk, eph, to = _DIR_HEAD.unpack_from(body)
    _verify(gpk, DIRECT_CONTEXT, body, sig)
    if to != keys.xpk:
        raise GroupError("not for us")
    try:
        key = _direct_key(x25519(keys.dh_private, eph), eph, to)
        plaintext = aead_decrypt(key, bytes(24), body[_DIR_HEAD.size :], body[: _DIR_HEAD.size])
    except (DecryptionError, KeyValidationError, ValueError):
        raise GroupError("undecryptable") from None
    return gpk, plaintext
