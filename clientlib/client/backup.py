"""Encrypted backups (protocol.md §24.3): the identity, contacts, groups and settings of a
client in one file that only the holder of its recovery key can open.

A backup holds what a fresh machine needs to take over the identity and reach every contact
again: the identity seed, our display name, the relay, the boundaries, and per accepted
contact its identity key, names, flags, settings and the two pairwise mailboxes (ours with
its owner key, the contact's send id and capability); per active group (body version 2)
our per-group keys, our group mailbox with its owner key, the membership log, the epoch
secret and the other members' receiver chains. It holds no ratchet state, no sender chain of
ours, no prekeys and no history: after a restore, every session is renewed through a session
offer (§24.4), which the contact's client shows as "safety number unchanged, new session",
and every group gets a new sender chain of ours, distributed to its members.

The recovery key is 32 random bytes, drawn when the backup is written and shown once, as the
24 words of BIP-39 (English list; the last word carries an 8-bit checksum that catches a
mistyped word). It is high-entropy, so the file key is one HKDF, not a password hash::

    file = "BRBACKUP" | 0x01 | salt(32) | nonce(24) | XChaCha20-Poly1305(k, nonce, pad(body), ad)
    ad   = the first 65 bytes (magic, version, salt, nonce... up to the ciphertext)
    k    = HKDF-SHA256(ikm = recovery key, salt = salt, info = "blindrelay/v1/backup", 32)
    pad(body) = u32(len(body)) | body | zeros, to a multiple of 4,096 bytes
    body = 0x02 | msgpack map (see :func:`encode_body`; 0x01: version 1, without groups)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgpack

from clientlib.crypto.keys import RNG
from clientlib.crypto.primitives import aead_decrypt, aead_encrypt, hkdf
from clientlib.errors import DecryptionError, MessagingError, WireError
from clientlib.wire.codec import unpack_strict

__all__ = [
    "BACKUP_MAGIC",
    "BACKUP_VERSION",
    "MAX_BACKUP_SIZE",
    "BackupContact",
    "BackupContents",
    "BackupError",
    "BackupGroup",
    "CorruptBackup",
    "WrongRecoveryKey",
    "decode_body",
    "encode_body",
    "open_backup",
    "read_backup",
    "recovery_key_from_words",
    "recovery_words",
    "seal_backup",
    "write_backup",
]

BACKUP_MAGIC: Final = b"BRBACKUP"
BACKUP_VERSION: Final = 1
_BODY_VERSION: Final = 2
#: Body versions a reader opens: 1 (revision 10, ``groups`` always empty) and 2 (groups).
_BODY_VERSIONS: Final = (1, 2)
_HEADER: Final = len(BACKUP_MAGIC) + 1 + 32 + 24
_PAD_TO: Final = 4096
_INFO: Final = b"blindrelay/v1/backup"
#: A backup of the most contacts a client keeps stays far below this; larger files are refused
#: before they are read.
MAX_BACKUP_SIZE: Final = 16 * 1024 * 1024
RECOVERY_KEY_SIZE: Final = 32


class BackupError(MessagingError):
    """A backup cannot be read; nothing was changed."""


class CorruptBackup(BackupError):
    """The file is not a blindrelay backup of a version this client reads (truncated,
    another format, a newer version)."""


class WrongRecoveryKey(BackupError):
    """The recovery key does not open this backup: mistyped words (the checksum failed), the
    key of another backup, or a file altered since it was written (these cannot be told
    apart)."""


def _mnemonic() -> Any:
    from mnemonic import Mnemonic

    return Mnemonic("english")


def recovery_words(key: bytes) -> str:
    """The 24 words (BIP-39, English) that spell a 32-byte recovery key."""
    if len(key) != RECOVERY_KEY_SIZE:
        raise ValueError("a recovery key is 32 bytes")
    return str(_mnemonic().to_mnemonic(key))


def recovery_key_from_words(words: str) -> bytes:
    """The recovery key spelled by ``words`` (case and spacing do not matter).

    Raises:
        WrongRecoveryKey: not 24 words of the list, or the checksum fails.
    """
    norm = " ".join(words.lower().split())
    m = _mnemonic()
    if len(norm.split()) != 24:
        raise WrongRecoveryKey("a recovery key is 24 words")
    try:
        ok = m.check(norm)
    except (LookupError, ValueError):
        ok = False
    if not ok:
        raise WrongRecoveryKey("the recovery words do not check: a word is mistyped or missing")
    key = bytes(m.to_entropy(norm))
    if len(key) != RECOVERY_KEY_SIZE:  # pragma: no cover - 24 words are 32 bytes
        raise WrongRecoveryKey("a recovery key is 24 words")
    return key


@dataclass(slots=True, repr=False)
class BackupContact:
    """One accepted contact as a backup keeps it (no session, no history)."""

    cid: bytes
    name: str
    identity: bytes
    rid: bytes
    sid: bytes
    owner: bytes
    mycap: bytes
    send: bytes
    sendcap: bytes | None
    verified: bool = False
    blocked: bool = False
    created: int = 0
    settings: list[int] = field(default_factory=lambda: [1, 1, 1])
    peer: list[int] | None = None
    dis: int = 0
    disv: int = 0

    def __repr__(self) -> str:
        return "BackupContact(<secret>)"


@dataclass(slots=True, repr=False)
class BackupGroup:
    """One active group as a backup keeps it (protocol.md §24.3, body version 2): what the
    restored client needs to receive in it and, after distributing a new sender chain of
    generation ``ngen``, to send. ``peers``: each other member's receiver chain, ``gpk ->
    [epoch, gen, index, ck, [[skipped index, key], ...]]``."""

    gid: bytes
    name: str
    seed: bytes
    dh: bytes
    rid: bytes
    sid: bytes
    owner: bytes
    log: list[bytes]
    es: bytes
    ese: int
    ngen: int
    peers: dict[bytes, list[Any]]
    typ: bool = True

    def __repr__(self) -> str:
        return "BackupGroup(<secret>)"


@dataclass(slots=True, repr=False)
class BackupContents:
    """What a backup restores."""

    seed: bytes
    relay: str
    name: str
    created: int
    boundaries: list[int] | None
    contacts: list[BackupContact]
    #: Active groups (protocol.md §26; body version 2).
    groups: list[BackupGroup] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"BackupContents(<secret>, contacts={len(self.contacts)}, groups={len(self.groups)})"


def _b(n: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is bytes and len(v) == n


def _ints(v: Any) -> bool:
    return type(v) is list and 3 <= len(v) <= 8 and all(type(x) is int for x in v)


_CONTACT_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "cid": _b(16),
    "name": lambda v: type(v) is str and len(v.encode()) <= 256,
    "identity": _b(32),
    "rid": _b(16),
    "sid": _b(16),
    "owner": _b(32),
    "mycap": _b(32),
    "send": _b(16),
    "sendcap": lambda v: v is None or (type(v) is bytes and len(v) == 32),
    "verified": lambda v: type(v) is bool,
    "blocked": lambda v: type(v) is bool,
    "created": lambda v: type(v) is int and v >= 0,
    "settings": _ints,
    "peer": lambda v: v is None or _ints(v),
    "dis": lambda v: type(v) is int and v >= 0,
    "disv": lambda v: type(v) is int and v >= 0,
}
_REQUIRED: Final = frozenset(("cid", "identity", "rid", "sid", "owner", "mycap", "send"))
_U32: Final = 2**32 - 1


def _u32(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _U32


def _chain(v: Any) -> bool:
    """A receiver chain ``[epoch, gen, index, ck, [[index, key], ...]]`` (at most 1,000
    skipped keys)."""
    return (
        type(v) is list
        and len(v) == 5
        and all(_u32(x) for x in v[:3])
        and _b(32)(v[3])
        and type(v[4]) is list
        and len(v[4]) <= 1000
        and all(type(p) is list and len(p) == 2 and _u32(p[0]) and _b(32)(p[1]) for p in v[4])
    )


#: Keys of one group, in their order in the body.
_GROUP_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "gid": _b(16),
    "name": lambda v: type(v) is str and len(v.encode()) <= 256,
    "seed": _b(32),
    "dh": _b(32),
    "rid": _b(16),
    "sid": _b(16),
    "owner": _b(32),
    "log": lambda v: (
        type(v) is list and len(v) >= 1 and all(type(e) is bytes and len(e) > 0 for e in v)
    ),
    "es": _b(32),
    "ese": _u32,
    "ngen": _u32,
    "peers": lambda v: (
        type(v) is dict and len(v) <= 1000 and all(_b(32)(k) and _chain(c) for k, c in v.items())
    ),
    "typ": lambda v: type(v) is bool,
}


def encode_body(c: BackupContents, *, version: int = _BODY_VERSION) -> bytes:
    """``0x02 | msgpack`` of ``{"v", "seed", "relay", "name", "created", "bnd", "contacts",
    "groups"}``; each contact a map of the :class:`BackupContact` field names, each group
    one of the :class:`BackupGroup` field names. ``version`` 1 writes the revision-10 body
    (for vectors and tests: it has no groups)."""
    if version not in _BODY_VERSIONS or (version == 1 and c.groups):
        raise ValueError("a version-1 backup body has no groups")
    doc = {
        "v": version,
        "seed": c.seed,
        "relay": c.relay,
        "name": c.name,
        "created": c.created,
        "bnd": c.boundaries,
        "contacts": [{k: getattr(x, k) for k in _CONTACT_CHECKS} for x in c.contacts],
        "groups": [{k: getattr(g, k) for k in _GROUP_CHECKS} for g in c.groups],
    }
    packed: bytes = msgpack.packb(doc, use_bin_type=True)
    return bytes((version,)) + packed


def decode_body(raw: bytes) -> BackupContents:
    """Raises: CorruptBackup: the body does not decode (an authenticated body that does not is
    the output of a buggy or newer writer)."""
    try:
        if not raw or raw[0] not in _BODY_VERSIONS:
            raise ValueError
        d = unpack_strict(raw[1:])
        if type(d) is not dict or set(d) != {
            "v",
            "seed",
            "relay",
            "name",
            "created",
            "bnd",
            "contacts",
            "groups",
        }:
            raise ValueError
        if d["v"] != raw[0] or not _b(32)(d["seed"]):
            raise ValueError
        if type(d["relay"]) is not str or not d["relay"] or type(d["name"]) is not str:
            raise ValueError
        if type(d["created"]) is not int or not (d["bnd"] is None or _ints(d["bnd"])):
            raise ValueError
        if type(d["contacts"]) is not list or type(d["groups"]) is not list:
            raise ValueError
        if d["v"] == 1 and d["groups"]:  # reserved, empty, in version 1
            raise ValueError
        groups = []
        for g in d["groups"]:
            if type(g) is not dict or list(g) != list(_GROUP_CHECKS):
                raise ValueError
            if not all(_GROUP_CHECKS[k](v) for k, v in g.items()):
                raise ValueError
            groups.append(BackupGroup(**g))
        if len({g.gid for g in groups}) != len(groups):
            raise ValueError
        contacts = []
        for x in d["contacts"]:
            if type(x) is not dict or set(x) - set(_CONTACT_CHECKS) or _REQUIRED - set(x):
                raise ValueError
            if not all(_CONTACT_CHECKS[k](v) for k, v in x.items()):
                raise ValueError
            contacts.append(BackupContact(**x))
        if len({x.cid for x in contacts}) != len(contacts):
            raise ValueError
        return BackupContents(
            d["seed"], d["relay"], d["name"], d["created"], d["bnd"], contacts, groups
        )
    except (WireError, ValueError, TypeError):
        raise CorruptBackup("the backup's contents do not decode") from None


def _file_key(key: bytes, salt: bytes) -> bytes:
    return hkdf(key, salt=salt, info=_INFO, length=32)


def seal_backup(
    contents: BackupContents, key: bytes, rng: RNG, *, body_version: int = _BODY_VERSION
) -> bytes:
    """The backup file bytes (draws: salt 32, nonce 24)."""
    if len(key) != RECOVERY_KEY_SIZE:
        raise ValueError("a recovery key is 32 bytes")
    salt, nonce = rng(32), rng(24)
    head = BACKUP_MAGIC + bytes((BACKUP_VERSION,)) + salt + nonce
    body = encode_body(contents, version=body_version)
    n = 4 + len(body)
    padded = struct.pack(">I", len(body)) + body + bytes(-n % _PAD_TO)
    return head + aead_encrypt(_file_key(key, salt), nonce, padded, head)


def open_backup(data: bytes, key: bytes) -> BackupContents:
    """Open backup file bytes with a recovery key.

    Raises:
        CorruptBackup: not a backup (magic, size), or a version this client does not read.
        WrongRecoveryKey: the key does not authenticate the file.
    """
    if len(data) < _HEADER + 16 or data[: len(BACKUP_MAGIC)] != BACKUP_MAGIC:
        raise CorruptBackup("this is not a blindrelay backup")
    if data[len(BACKUP_MAGIC)] != BACKUP_VERSION:
        raise CorruptBackup(f"backup version {data[len(BACKUP_MAGIC)]} is not supported")
    if (len(data) - _HEADER - 16) % _PAD_TO:
        raise CorruptBackup("the backup is truncated")
    head = data[:_HEADER]
    salt, nonce = head[9:41], head[41:65]
    try:
        padded = aead_decrypt(_file_key(key, salt), nonce, data[_HEADER:], head)
    except DecryptionError:
        raise WrongRecoveryKey(
            "the recovery key does not open this backup (another backup's key, or the file "
            "was altered)"
        ) from None
    (n,) = struct.unpack(">I", padded[:4])
    if 4 + n > len(padded) or any(padded[4 + n :]):
        raise CorruptBackup("the backup's padding is malformed")
    return decode_body(padded[4 : 4 + n])


def write_backup(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a new backup file (mode 0600, fsynced; an existing file is not overwritten).

    Raises:
        FileExistsError: ``path`` exists.
    """
    from clientlib.client._export import write_new_file

    write_new_file(path, data)


def read_backup(path: str | os.PathLike[str]) -> bytes:
    """Raises: CorruptBackup: too large to be a backup. OSError: cannot be read."""
    p = Path(path)
    if p.stat().st_size > MAX_BACKUP_SIZE:
        raise CorruptBackup("the file is too large to be a blindrelay backup")
    return p.read_bytes()
