"""Message history: a pluggable store of conversations (protocol.md §23.4).

:class:`~clientlib.client.Client` writes every received message to the history store *before*
it acknowledges the envelope to the relay, and every outgoing message before it is queued, so
the store must be durable when :meth:`HistoryStore.add` returns. Adds are idempotent per
``(contact_id, direction, id)``: a redelivered envelope (at-least-once delivery) is dropped
here.

Two implementations:

* :class:`MemoryHistory` -- nothing on disk (bots, tests, apps with their own database).
* :class:`EncryptedFileHistory` -- an append-only file of records (format version 2):

  - **crypto-shredding**: each conversation has its own random 32-byte key, held in the
    keystore (namespace ``history-keys``); its records are sealed with XChaCha20-Poly1305
    under that key. :meth:`~EncryptedFileHistory.forget` destroys the key and compacts the
    file (the remaining records are rewritten to a new file, fsynced, committed in the
    keystore, then atomically renamed over the old one), so no record of the conversation
    is left that any key still held decrypts;
  - **a chain**: record ``i``'s associated data holds the file's random epoch, ``i`` and the
    chain value ``c_i``, with ``c_0 = HMAC(m, "blindrelay/v1/history-chain" || 0x00 ||
    epoch)`` and ``c_{i+1} = HMAC(m, c_i || u64(i) || record_i)`` under the keystore's
    ``meta/history-key`` ``m``; the keystore keeps the head ``(epoch, count, c_count)`` of
    the last durable append. Opening a file that is shorter than the head (truncated), has a
    record dropped, moved or replaced below it, or another epoch (an older or foreign file
    spliced in) raises :class:`CorruptHistory`. Records past the head (appended after the
    keystore was last saved: a crash window) are kept if they authenticate, and the file is
    cut at the first that does not (a torn last write).

  A version-1 file (one key for every record, no chain) is migrated on open: replayed under
  its old key, rewritten as version 2 under fresh per-conversation keys, and the old key is
  replaced, so a kept copy of the old file no longer decrypts.

The keystore is the anchor against rollback: whoever can replace the keystore file AND the
history file with older copies of both (a backup, a disk image) restores the older history
undetected (protocol.md §18).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgpack

from clientlib.client._history_records import (
    STATES,
    Table,
    parse_message,
    record_cid,
    record_msg,
    to_wire,
)
from clientlib.client.types import DeliveryState, StoredMessage
from clientlib.crypto.primitives import (
    AEAD_NONCE_SIZE,
    AEAD_TAG_SIZE,
    aead_decrypt,
    aead_encrypt,
    ct_eq,
    hmac_sha256,
)
from clientlib.errors import DecryptionError, KeystoreError, MessagingError, WireError
from clientlib.keystore.base import Keystore
from clientlib.keystore.file import fsync_dir
from clientlib.wire.codec import unpack_strict

__all__ = [
    "CorruptHistory",
    "EncryptedFileHistory",
    "HistoryStore",
    "MemoryHistory",
]

_MAGIC_V1 = b"BRHIST\x00\x01"
_MAGIC = b"BRHIST\x00\x02"
_AD_V1 = b"blindrelay/v1/history\x00"
_REC_AD = b"blindrelay/v1/history-record\x00"
_CHAIN_LABEL = b"blindrelay/v1/history-chain\x00"
_EPOCH = 16
_HEADER = len(_MAGIC) + _EPOCH
_KEY_ID = 16
_LEN = struct.Struct(">I")
_INDEX = struct.Struct(">Q")
_MAX_RECORD = 1 << 20
_MIN_RECORD = _KEY_ID + AEAD_NONCE_SIZE + AEAD_TAG_SIZE
#: Keystore entries (protocol.md §23.4).
_NS = "history"  # b"head" -> msgpack [epoch (bin 16), count (int), chain (bin 32)]
_KEYS_NS = "history-keys"  # contact id (UTF-8) -> key id (16) || key (32)
#: A disappearing message's own key: key id (16) -> key (32) || msgpack [contact, dir, id].
_MSG_KEYS_NS = "history-msgkeys"
#: Key ids destroyed while their records still sit in the file: key id (16) -> b"".
_SHRED_NS = "history-shredded"
#: Destroyed keys tolerated before the file is compacted (each costs 16 bytes of keystore).
SHRED_COMPACT_AT = 256
_MAC = ("meta", b"history-key")  # chain MAC key (in a version-1 keystore: the record key)


class CorruptHistory(MessagingError):
    """The history file is damaged, truncated, reordered, replaced by an older or foreign
    file, or does not belong to this keystore. Nothing was changed; the client refuses to
    open (see :meth:`EncryptedFileHistory.reset` to start over)."""


@runtime_checkable
class HistoryStore(Protocol):
    """Where a client keeps conversations. Methods are synchronous and quick."""

    def add(self, messages: Sequence[StoredMessage]) -> list[bool]:
        """Store messages durably; per message, False if it was already stored."""
        ...

    def set_state(self, contact_id: str, message_id: str, state: DeliveryState) -> None:
        """Record a delivery state change of an outgoing message (may be made durable lazily)."""
        ...

    def messages(self, contact_id: str, *, limit: int | None = None) -> list[StoredMessage]:
        """The conversation, oldest first (the last ``limit`` messages if given)."""
        ...

    def forget(self, contact_id: str) -> None:
        """Delete a whole conversation, unrecoverably (durable on return)."""
        ...

    def get(self, contact_id: str, direction: str, message_id: str) -> StoredMessage | None:
        """One message, or None."""
        ...

    def update(
        self,
        contact_id: str,
        direction: str,
        message_id: str,
        patch: dict[str, Any],
        *,
        shred: bool = False,
    ) -> StoredMessage | None:
        """Apply a change to a stored message durably and return its new state (None: no
        such message). ``patch`` keys (protocol.md §23.4): ``text``+``ed`` (an edit),
        ``dl`` (deleted for everyone: text, evidence and reactions go), ``ex`` (expiry
        time), ``sn`` (displayed), ``rx`` (``[who, emoji]``). ``shred``: the previous
        content must become unrecoverable too (unsend)."""
        ...

    def expire(self, now: int) -> list[StoredMessage]:
        """Remove, unrecoverably and durably, every message whose ``expires_at`` is at or
        before ``now``; returns what was removed."""
        ...

    def next_expiry(self) -> int | None:
        """The earliest ``expires_at`` of any stored message, or None."""
        ...

    def wipe(self) -> None:
        """Delete everything, including any file, and close."""
        ...

    def close(self) -> None: ...


class MemoryHistory:
    """History kept in memory only."""

    def __init__(self) -> None:
        self._t = Table()

    def add(self, messages: Sequence[StoredMessage]) -> list[bool]:
        return [self._t.add(m) for m in messages]

    def set_state(self, contact_id: str, message_id: str, state: DeliveryState) -> None:
        self._t.set_state(contact_id, message_id, state)

    def messages(self, contact_id: str, *, limit: int | None = None) -> list[StoredMessage]:
        return self._t.messages(contact_id, limit)

    def forget(self, contact_id: str) -> None:
        self._t.convs.pop(contact_id, None)

    def get(self, contact_id: str, direction: str, message_id: str) -> StoredMessage | None:
        return self._t.get(contact_id, direction, message_id)

    def update(
        self,
        contact_id: str,
        direction: str,
        message_id: str,
        patch: dict[str, Any],
        *,
        shred: bool = False,
    ) -> StoredMessage | None:
        return self._t.patch(contact_id, direction, message_id, patch)

    def expire(self, now: int) -> list[StoredMessage]:
        due = self._t.due(now)
        for m in due:
            self._t.remove(m)
        return due

    def next_expiry(self) -> int | None:
        return self._t.next_expiry()

    def wipe(self) -> None:
        self._t.convs.clear()

    def close(self) -> None:
        pass


def _genesis(mac: bytes, epoch: bytes) -> bytes:
    return hmac_sha256(mac, _CHAIN_LABEL + epoch)


def _next_chain(mac: bytes, chain: bytes, index: int, blob: bytes) -> bytes:
    return hmac_sha256(mac, chain + _INDEX.pack(index) + blob)


def _record_ad(epoch: bytes, index: int, chain: bytes, key_id: bytes) -> bytes:
    return _REC_AD + epoch + _INDEX.pack(index) + chain + key_id


class _Head:
    """What the keystore remembers of the file: its epoch, record count and chain value."""

    __slots__ = ("chain", "count", "epoch")

    def __init__(self, epoch: bytes, count: int, chain: bytes) -> None:
        self.epoch, self.count, self.chain = epoch, count, chain

    def encode(self) -> bytes:
        out: bytes = msgpack.packb([self.epoch, self.count, self.chain])
        return out

    @classmethod
    def decode(cls, raw: bytes) -> _Head:
        try:
            v = unpack_strict(raw)
        except WireError:
            raise CorruptHistory("the keystore's history head is malformed") from None
        if (
            type(v) is not list
            or len(v) != 3
            or type(v[0]) is not bytes
            or len(v[0]) != _EPOCH
            or type(v[1]) is not int
            or v[1] < 0
            or type(v[2]) is not bytes
            or len(v[2]) != 32
        ):
            raise CorruptHistory("the keystore's history head is malformed")
        return cls(v[0], v[1], v[2])


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` (mode 0600) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class EncryptedFileHistory:
    """History in one append-only encrypted file, keyed and anchored in the keystore.

    Args:
        path: the file (created if missing; its directory must exist). A compaction in
            progress uses ``<path>.compact`` beside it.
        keystore: where the per-conversation keys, the chain MAC key and the head live. The
            history changes keystore entries in memory as it appends (the caller's next
            ``save`` makes them durable, as :class:`~clientlib.Client` does after every
            message) and saves the keystore itself in :meth:`forget`, on migration and in
            :meth:`wipe`. Call it with the lock that guards the keystore's other writers.
        rng: ``rng(n)`` returns ``n`` random bytes, for keys, epochs and nonces.

    Raises:
        CorruptHistory: the file is not a history file, does not belong to this keystore, is
            truncated or damaged below the keystore's head, has records dropped or reordered,
            or is another (older) file than the one the keystore knows. The file and the
            keystore are left unchanged.
    """

    def __init__(
        self, path: str | os.PathLike[str], keystore: Keystore, *, rng: Callable[[int], bytes]
    ):
        if not isinstance(keystore, Keystore):
            raise TypeError("keystore must be a clientlib Keystore")
        self._path = Path(path)
        self._compact_path = self._path.with_name(self._path.name + ".compact")
        self._ks = keystore
        self._rng = rng
        self._t = Table()
        self._fd: int | None = None
        self._keys: dict[str, tuple[bytes, bytes]] = {}  # contact id -> (key id, key)
        self._by_id: dict[bytes, tuple[str, bytes]] = {}  # key id -> (contact id, key)
        # (contact id, direction, message id) -> (key id, key): disappearing messages
        self._msg_keys: dict[tuple[str, str, str], tuple[bytes, bytes]] = {}
        self._shredded: set[bytes] = set()
        self._mac = b""
        self._epoch = b""
        self._count = 0  # records in the file
        self._chain = b""  # chain value after them
        self._load()

    # --- keys and head ----------------------------------------------------------------------

    def _draw(self, n: int) -> bytes:
        out = self._rng(n)
        if type(out) is not bytes or len(out) != n:
            raise ValueError("rng returned the wrong number of bytes")
        return out

    def _load_keys(self) -> None:
        self._keys.clear()
        self._by_id.clear()
        self._msg_keys.clear()
        for raw_cid, value in self._ks.items(_KEYS_NS):
            if len(value) != _KEY_ID + 32:
                raise CorruptHistory("the keystore's history key table is malformed")
            cid = raw_cid.decode("utf-8", "surrogateescape")
            self._keys[cid] = (value[:_KEY_ID], value[_KEY_ID:])
            self._by_id[value[:_KEY_ID]] = (cid, value[_KEY_ID:])
        for key_id, value in self._ks.items(_MSG_KEYS_NS):
            try:
                ref = unpack_strict(value[32:])
            except WireError:
                ref = None
            if (
                len(key_id) != _KEY_ID
                or len(value) < 33
                or type(ref) is not list
                or len(ref) != 3
                or not all(type(x) is str for x in ref)
            ):
                raise CorruptHistory("the keystore's history key table is malformed")
            self._msg_keys[(ref[0], ref[1], ref[2])] = (key_id, value[:32])
            self._by_id[key_id] = (ref[0], value[:32])
        self._shredded = {k for k, _ in self._ks.items(_SHRED_NS)}

    def _record_key(self, rec: list[Any]) -> tuple[bytes, bytes]:
        """The key a record is sealed under: its message's own key if it has (or, for a
        message with a timer, gets) one, else its conversation's."""
        ref = record_msg(rec)
        entry = self._msg_keys.get(ref)
        if entry is None and rec[0] == 0 and len(rec) == 10 and rec[9].get("tm"):
            entry = (self._draw(_KEY_ID), self._draw(32))
            self._msg_keys[ref] = entry
            self._by_id[entry[0]] = (ref[0], entry[1])
            packed: bytes = msgpack.packb(list(ref))
            self._ks.put(_MSG_KEYS_NS, entry[0], entry[1] + packed)
        return entry if entry is not None else self._key_for(ref[0])

    def _shred(self, ref: tuple[str, str, str]) -> bool:
        """Destroy a message's own key (in memory; the caller saves). False: it has none."""
        entry = self._msg_keys.pop(ref, None)
        if entry is None:
            return False
        self._by_id.pop(entry[0], None)
        self._ks.delete(_MSG_KEYS_NS, entry[0])
        self._ks.put(_SHRED_NS, entry[0], b"")
        self._shredded.add(entry[0])
        return True

    def _key_for(self, cid: str) -> tuple[bytes, bytes]:
        entry = self._keys.get(cid)
        if entry is None:
            entry = (self._draw(_KEY_ID), self._draw(32))
            self._keys[cid] = entry
            self._by_id[entry[0]] = (cid, entry[1])
            self._ks.put(_KEYS_NS, cid.encode("utf-8", "surrogateescape"), entry[0] + entry[1])
        return entry

    def _put_head(self) -> None:
        self._ks.put(_NS, b"head", _Head(self._epoch, self._count, self._chain).encode())

    def _seal(
        self, records: Sequence[list[Any]], epoch: bytes, index: int, chain: bytes
    ) -> tuple[bytes, int, bytes]:
        """Encode records as they follow ``index`` records ending in ``chain``."""
        out = bytearray()
        for rec in records:
            record_cid(rec)
            key_id, key = self._record_key(rec)
            nonce = self._draw(AEAD_NONCE_SIZE)
            ad = _record_ad(epoch, index, chain, key_id)
            blob = key_id + nonce + aead_encrypt(key, nonce, msgpack.packb(rec), ad)
            out += _LEN.pack(len(blob)) + blob
            chain = _next_chain(self._mac, chain, index, blob)
            index += 1
        return bytes(out), index, chain

    # --- opening ----------------------------------------------------------------------------

    def _load(self) -> None:
        raw_head = self._ks.get(_NS, b"head")
        head = _Head.decode(raw_head) if raw_head is not None else None
        self._load_keys()
        self._finish_compaction(head)
        data = self._path.read_bytes() if self._path.exists() else b""
        if data.startswith(_MAGIC_V1):
            self._migrate(data)
        elif not data:
            if head is not None and head.count > 0:
                raise CorruptHistory("the history file is missing or was emptied")
            self._create()
        else:
            self._replay(data, head)
            if self._shredded:
                self._rewrite()  # drop the records of destroyed keys from the file
        self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND)

    def _finish_compaction(self, head: _Head | None) -> None:
        """Complete (or drop) a compaction a crash interrupted: the keystore decides."""
        if not self._compact_path.exists():
            return
        pending = self._compact_path.read_bytes()
        if head is not None and pending[len(_MAGIC) : _HEADER] == head.epoch:
            os.replace(self._compact_path, self._path)  # committed in the keystore: finish
        else:
            self._compact_path.unlink()  # never committed: the old file stands
        with contextlib.suppress(OSError):
            fsync_dir(self._path.parent)

    def _create(self) -> None:
        mac = self._ks.get(*_MAC)
        if mac is None or len(mac) != 32:
            mac = self._draw(32)
            self._ks.put(*_MAC, mac)
        self._mac = mac
        self._epoch = self._draw(_EPOCH)
        self._count, self._chain = 0, _genesis(mac, self._epoch)
        _write_new(self._path, _MAGIC + self._epoch)
        with contextlib.suppress(OSError):
            fsync_dir(self._path.parent)
        self._put_head()
        self._ks.save()  # the anchor: from now on the file must match the keystore

    def _replay(self, data: bytes, head: _Head | None) -> None:
        if not data.startswith(_MAGIC) or len(data) < _HEADER:
            raise CorruptHistory("not a blindrelay history file")
        mac = self._ks.get(*_MAC)
        if head is None or mac is None or len(mac) != 32:
            raise CorruptHistory("the history file does not belong to this keystore")
        epoch = data[len(_MAGIC) : _HEADER]
        if not ct_eq(epoch, head.epoch):
            raise CorruptHistory("the history file is not the one this keystore knows")
        self._mac = mac
        table = Table()
        chain = _genesis(mac, epoch)
        index, pos = 0, _HEADER
        committed = chain if head.count == 0 else None
        while pos < len(data):
            if pos + _LEN.size > len(data):
                break  # torn length prefix
            (n,) = _LEN.unpack_from(data, pos)
            end = pos + _LEN.size + n
            if n > _MAX_RECORD or n < _MIN_RECORD or end > len(data):
                break  # impossible length or torn body
            blob = data[pos + _LEN.size : end]
            key_id = blob[:_KEY_ID]
            entry = self._by_id.get(key_id)
            if entry is None and key_id in self._shredded:
                # A destroyed key (an expired message): the record stays in the chain and
                # nothing can read it; the next compaction drops it.
                chain = _next_chain(mac, chain, index, blob)
                index += 1
                pos = end
                if index == head.count:
                    committed = chain
                continue
            if entry is None:
                break  # a key the keystore never saved (crash before its save)
            cid, key = entry
            ad = _record_ad(epoch, index, chain, key_id)
            try:
                nonce = blob[_KEY_ID : _KEY_ID + AEAD_NONCE_SIZE]
                pt = aead_decrypt(key, nonce, blob[_KEY_ID + AEAD_NONCE_SIZE :], ad)
                rec = unpack_strict(pt)
                if record_cid(rec) != cid:
                    raise ValueError("record of another conversation")
                self._apply(table, rec)
            except (DecryptionError, WireError, ValueError, TypeError):
                break
            chain = _next_chain(mac, chain, index, blob)
            index += 1
            pos = end
            if index == head.count:
                committed = chain
        if index < head.count:
            raise CorruptHistory(
                "the history was truncated, or a record was dropped, reordered or damaged"
            )
        if committed is None or not ct_eq(committed, head.chain):
            raise CorruptHistory("the history file is not the one this keystore knows")
        if pos < len(data):  # an uncommitted tail that does not authenticate: a torn write
            fd = os.open(self._path, os.O_RDWR)
            try:
                os.ftruncate(fd, pos)
                os.fsync(fd)
            finally:
                os.close(fd)
        self._t = table
        self._epoch, self._count, self._chain = epoch, index, chain
        if index != head.count:
            self._put_head()

    @staticmethod
    def _apply(table: Table, rec: list[Any]) -> None:
        if rec[0] == 0:
            table.add(parse_message(rec))
        elif rec[0] == 2:
            if rec[2] not in ("in", "out") or type(rec[3]) is not str:
                raise ValueError("bad record")
            table.patch(rec[1], rec[2], rec[3], rec[4])
        elif rec[3] in STATES:
            table.set_state(rec[1], rec[2], rec[3])
        else:
            raise ValueError("bad record")

    def _migrate(self, data: bytes) -> None:
        """Rewrite a version-1 file as version 2 (per-conversation keys, chained records)."""
        old_key = self._ks.get(*_MAC)
        if old_key is None or len(old_key) != 32:
            raise CorruptHistory("a version-1 history file without its key in the keystore")
        table = Table()
        pos = len(_MAGIC_V1)
        while pos + _LEN.size <= len(data):
            (n,) = _LEN.unpack_from(data, pos)
            end = pos + _LEN.size + n
            if n > _MAX_RECORD or n < AEAD_NONCE_SIZE + AEAD_TAG_SIZE:
                raise CorruptHistory("history record has an impossible length")
            if end > len(data):
                break  # torn record body
            blob = data[pos + _LEN.size : end]
            try:
                pt = aead_decrypt(old_key, blob[:AEAD_NONCE_SIZE], blob[AEAD_NONCE_SIZE:], _AD_V1)
                rec = unpack_strict(pt)
                if type(rec) is list and len(rec) == 2 and rec[0] == 2:
                    table.convs.pop(rec[1], None)  # a version-1 "forget" record
                else:
                    record_cid(rec)
                    self._apply(table, rec)
            except (DecryptionError, WireError, ValueError, TypeError):
                raise CorruptHistory(
                    "history record does not authenticate (wrong key or damage)"
                ) from None
            pos = end
        self._t = table
        self._mac = self._draw(32)
        self._ks.put(*_MAC, self._mac)  # the old key goes: old copies no longer decrypt
        self._rewrite()

    # --- compaction -------------------------------------------------------------------------

    def _rewrite(self) -> None:
        """Write every remaining message to a new file with a new epoch under fresh keys
        (every old key, and the list of destroyed ones, goes in the same keystore save: a
        kept copy of the old file decrypts under nothing the keystore holds), commit it in
        the keystore, then rename it into place."""
        ks = self._ks
        saved = {ns: ks.items(ns) for ns in (_KEYS_NS, _MSG_KEYS_NS, _SHRED_NS)}
        old = (self._epoch, self._count, self._chain)
        for ns, items in saved.items():
            for key, _ in items:
                ks.delete(ns, key)
        self._keys.clear()
        self._by_id.clear()
        self._msg_keys.clear()
        shredded, self._shredded = self._shredded, set()
        try:
            epoch = self._draw(_EPOCH)
            records = [to_wire(m) for conv in self._t.convs.values() for m in conv.values()]
            body, count, chain = self._seal(records, epoch, 0, _genesis(self._mac, epoch))
            _write_new(self._compact_path, _MAGIC + epoch + body)
            self._epoch, self._count, self._chain = epoch, count, chain
            self._put_head()
            ks.save()  # the commit point
        except BaseException:
            for ns in saved:
                for key, _ in ks.items(ns):
                    ks.delete(ns, key)
            for ns, items in saved.items():
                for key, value in items:
                    ks.put(ns, key, value)
            self._epoch, self._count, self._chain = old
            self._put_head()
            self._shredded = shredded
            self._load_keys()
            with contextlib.suppress(OSError):
                self._compact_path.unlink()
            raise
        os.replace(self._compact_path, self._path)
        fsync_dir(self._path.parent)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
            self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND)

    # --- appending --------------------------------------------------------------------------

    def _append(self, records: Sequence[list[Any]], *, durable: bool = True) -> None:
        if self._fd is None:
            raise CorruptHistory("history is closed")
        body, count, chain = self._seal(records, self._epoch, self._count, self._chain)
        size = os.fstat(self._fd).st_size
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(self._fd, view) :]
            if durable:
                os.fsync(self._fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            raise
        self._count, self._chain = count, chain
        # Only a durable append moves the keystore's head: a head past what reached the disk
        # would read as truncation after a power cut. A non-durable record stays past the
        # head (accepted on open while it authenticates) until the next durable append,
        # whose fsync covers it too.
        if durable:
            self._put_head()

    # --- HistoryStore ---------------------------------------------------------------------

    def add(self, messages: Sequence[StoredMessage]) -> list[bool]:
        fresh = [m for m in messages if not self._has(m)]
        if fresh:
            self._append([to_wire(m) for m in fresh])
        return [self._t.add(m) for m in messages]

    def _has(self, m: StoredMessage) -> bool:
        return (m.direction, m.id) in self._t.convs.get(m.contact_id, {})

    def set_state(self, contact_id: str, message_id: str, state: DeliveryState) -> None:
        # Advisory, so not fsynced on its own (one fsync per send instead of two): it stays
        # past the keystore's head until the next durable append. A crash or a cut may lose
        # trailing state changes, never a message: the head covers every message record.
        # Receipt states (delivered, read) arrive in batches, so they are fsynced: a cut
        # never takes back a tick the user saw.
        durable = state in ("delivered", "read")
        self._append([[1, contact_id, message_id, state]], durable=durable)
        self._t.set_state(contact_id, message_id, state)

    def messages(self, contact_id: str, *, limit: int | None = None) -> list[StoredMessage]:
        return self._t.messages(contact_id, limit)

    def get(self, contact_id: str, direction: str, message_id: str) -> StoredMessage | None:
        return self._t.get(contact_id, direction, message_id)

    def update(
        self,
        contact_id: str,
        direction: str,
        message_id: str,
        patch: dict[str, Any],
        *,
        shred: bool = False,
    ) -> StoredMessage | None:
        """See :meth:`HistoryStore.update`. A patch of a disappearing message is sealed
        under that message's own key. With ``shred`` the file is compacted under fresh
        keys (the keystore is saved), so the old records of the message are gone and the
        old file decrypts under nothing held. Durable on return."""
        if self._t.get(contact_id, direction, message_id) is None:
            return None
        if self._fd is None:
            raise CorruptHistory("history is closed")
        if not shred:
            self._append([[2, contact_id, direction, message_id, patch]])
            return self._t.patch(contact_id, direction, message_id, patch)
        new = self._t.patch(contact_id, direction, message_id, patch)
        self._rewrite()  # rare (unsend): the old records go with every old key
        return new

    def expire(self, now: int) -> list[StoredMessage]:
        """See :meth:`HistoryStore.expire`: every due message's own key is destroyed (a
        message without one goes by compaction) and the keystore saved, so the file alone
        never yields it again; the file itself is compacted once
        :data:`SHRED_COMPACT_AT` destroyed keys accumulate, and on every open."""
        due = self._t.due(now)
        if not due:
            return []
        if self._fd is None:
            raise CorruptHistory("history is closed")
        compact = False
        for m in due:
            self._t.remove(m)
            compact |= not self._shred((m.contact_id, m.direction, m.id))
        if compact or len(self._shredded) >= SHRED_COMPACT_AT:
            self._rewrite()
        else:
            self._ks.save()
        return due

    def next_expiry(self) -> int | None:
        return self._t.next_expiry()

    def forget(self, contact_id: str) -> None:
        """Crypto-shred a conversation: destroy its key and compact the file without it.

        Durable on return; the keystore is saved (with everything else it holds).

        Raises:
            CorruptHistory: the history is closed.
            KeystoreError: the keystore could not be saved (nothing changed).
        """
        if self._fd is None:
            raise CorruptHistory("history is closed")
        saved = self._t.convs.pop(contact_id, None)
        try:
            self._rewrite()
        except BaseException:
            if saved is not None:
                self._t.convs[contact_id] = saved
            raise

    def wipe(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                size = os.fstat(fd).st_size
                os.pwrite(fd, bytes(size), 0)
                os.fsync(fd)
            os.close(fd)
        for p in (self._path, self._compact_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with contextlib.suppress(KeystoreError):
            self._forget_keys(self._ks)
            self._ks.save()
        self._t.convs.clear()
        self._keys.clear()
        self._by_id.clear()
        self._msg_keys.clear()

    @staticmethod
    def _forget_keys(keystore: Keystore) -> None:
        for ns in (_KEYS_NS, _MSG_KEYS_NS, _SHRED_NS):
            for key, _ in keystore.items(ns):
                keystore.delete(ns, key)
        keystore.delete(_NS, b"head")
        keystore.delete(*_MAC)

    @classmethod
    def reset(cls, path: str | os.PathLike[str], keystore: Keystore) -> None:
        """Start over after :class:`CorruptHistory`: destroy every history key and the head
        in ``keystore`` (saved), then delete the file. The old file, wherever copies of it
        are, no longer decrypts. The next open starts an empty history.

        Raises:
            KeystoreError: the keystore could not be saved (the file is left in place).
        """
        cls._forget_keys(keystore)
        keystore.save()
        p = Path(path)
        for f in (p, p.with_name(p.name + ".compact")):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._t.convs.clear()
        self._keys.clear()
        self._by_id.clear()
        self._msg_keys.clear()

    def __repr__(self) -> str:
        return "EncryptedFileHistory(<secret>)"
