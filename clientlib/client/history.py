"""Message history: a pluggable store of conversations (protocol.md §23.4).

:class:`~clientlib.client.Client` writes every received message to the history store *before*
it acknowledges the envelope to the relay, and every outgoing message before it is queued, so
the store must be durable when :meth:`HistoryStore.add` returns. Adds are idempotent per
``(contact_id, direction, id)``: a redelivered envelope (at-least-once delivery) is dropped
here.

Two implementations:

* :class:`MemoryHistory` -- nothing on disk (bots, tests, apps with their own database).
* :class:`EncryptedFileHistory` -- an append-only file of records, each sealed with
  XChaCha20-Poly1305 under a 32-byte key the client keeps in its keystore. A torn last record
  (crash mid-write) is cut off when the file is opened; any other damage is
  :class:`CorruptHistory`.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgpack

from clientlib.client.types import DeliveryState, StoredMessage
from clientlib.crypto.primitives import AEAD_NONCE_SIZE, AEAD_TAG_SIZE, aead_decrypt, aead_encrypt
from clientlib.errors import DecryptionError, MessagingError, WireError
from clientlib.keystore.file import fsync_dir
from clientlib.wire.codec import unpack_strict

__all__ = [
    "CorruptHistory",
    "EncryptedFileHistory",
    "HistoryStore",
    "MemoryHistory",
]

_MAGIC = b"BRHIST\x00\x01"
_AD = b"blindrelay/v1/history\x00"
_LEN = struct.Struct(">I")
_MAX_RECORD = 1 << 20
_STATES = ("queued", "sent", "received", "failed")


class CorruptHistory(MessagingError):
    """The history file is damaged (not only a torn last record) or was written with
    another key."""


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
        """Delete a whole conversation (durable on return)."""
        ...

    def wipe(self) -> None:
        """Delete everything, including any file, and close."""
        ...

    def close(self) -> None: ...


class _Table:
    """The in-memory index both implementations share."""

    def __init__(self) -> None:
        self.convs: dict[str, dict[tuple[str, str], StoredMessage]] = {}

    def add(self, m: StoredMessage) -> bool:
        conv = self.convs.setdefault(m.contact_id, {})
        key = (m.direction, m.id)
        if key in conv:
            return False
        conv[key] = m
        return True

    def set_state(self, contact_id: str, message_id: str, state: DeliveryState) -> None:
        conv = self.convs.get(contact_id, {})
        old = conv.get(("out", message_id))
        if old is not None:
            conv[("out", message_id)] = StoredMessage(
                old.contact_id,
                old.id,
                old.direction,
                old.text,
                old.sent_at,
                old.received_at,
                state,
                old.evidence,
            )

    def messages(self, contact_id: str, limit: int | None) -> list[StoredMessage]:
        out = list(self.convs.get(contact_id, {}).values())  # insertion order = arrival order
        return out if limit is None else out[-limit:] if limit > 0 else []


class MemoryHistory:
    """History kept in memory only."""

    def __init__(self) -> None:
        self._t = _Table()

    def add(self, messages: Sequence[StoredMessage]) -> list[bool]:
        return [self._t.add(m) for m in messages]

    def set_state(self, contact_id: str, message_id: str, state: DeliveryState) -> None:
        self._t.set_state(contact_id, message_id, state)

    def messages(self, contact_id: str, *, limit: int | None = None) -> list[StoredMessage]:
        return self._t.messages(contact_id, limit)

    def forget(self, contact_id: str) -> None:
        self._t.convs.pop(contact_id, None)

    def wipe(self) -> None:
        self._t.convs.clear()

    def close(self) -> None:
        pass


def _to_wire(m: StoredMessage) -> list[Any]:
    rec = [0, m.contact_id, m.id, m.direction, m.text, m.sent_at, m.received_at, m.state]
    return rec if m.evidence is None else [*rec, m.evidence]


class EncryptedFileHistory:
    """History in one append-only encrypted file.

    Args:
        path: the file (created if missing; its directory must exist).
        key: 32 secret bytes (the client stores a random one in its keystore).
        rng: ``rng(n)`` returns ``n`` random bytes, for nonces.

    Raises:
        CorruptHistory: the file is not a history file, was written under another key, or is
            damaged before its last record.
    """

    def __init__(self, path: str | os.PathLike[str], key: bytes, *, rng: Callable[[int], bytes]):
        if len(key) != 32:
            raise ValueError("history key must be 32 bytes")
        self._path = Path(path)
        self._key = key
        self._rng = rng
        self._t = _Table()
        self._fd: int | None = None
        self._load()

    # --- file format ----------------------------------------------------------------------

    def _load(self) -> None:
        fresh = not self._path.exists()
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if fresh or os.fstat(fd).st_size == 0:
                os.write(fd, _MAGIC)
                os.fsync(fd)
                if fresh:
                    with contextlib.suppress(OSError):
                        fsync_dir(self._path.parent)
            else:
                self._replay(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _replay(self, fd: int) -> None:
        with open(os.dup(fd), "rb") as f:
            data = f.read()
        if not data.startswith(_MAGIC):
            raise CorruptHistory("not a blindrelay history file")
        pos = len(_MAGIC)
        good = pos
        while pos < len(data):
            if pos + _LEN.size > len(data):
                break  # torn length prefix
            (n,) = _LEN.unpack_from(data, pos)
            end = pos + _LEN.size + n
            if n > _MAX_RECORD or n < AEAD_NONCE_SIZE + AEAD_TAG_SIZE:
                raise CorruptHistory("history record has an impossible length")
            if end > len(data):
                break  # torn record body
            blob = data[pos + _LEN.size : end]
            try:
                pt = aead_decrypt(self._key, blob[:AEAD_NONCE_SIZE], blob[AEAD_NONCE_SIZE:], _AD)
                self._apply(unpack_strict(pt))
            except (DecryptionError, WireError, ValueError, TypeError):
                raise CorruptHistory(
                    "history record does not authenticate (wrong key or damage)"
                ) from None
            pos = good = end
        if good < len(data):
            os.ftruncate(fd, good)
            os.fsync(fd)

    def _apply(self, rec: object) -> None:
        if type(rec) is not list or not rec or type(rec[0]) is not int:
            raise ValueError("bad record")
        if rec[0] == 0 and len(rec) in (8, 9):
            _, cid, mid, direction, text, sent_at, received_at, state = rec[:8]
            evidence = rec[8] if len(rec) == 9 else None
            if direction not in ("in", "out") or state not in _STATES:
                raise ValueError("bad record")
            if evidence is not None and type(evidence) is not bytes:
                raise ValueError("bad record")
            self._t.add(
                StoredMessage(cid, mid, direction, text, sent_at, received_at, state, evidence)
            )
        elif rec[0] == 1 and len(rec) == 4 and rec[3] in _STATES:
            self._t.set_state(rec[1], rec[2], rec[3])
        elif rec[0] == 2 and len(rec) == 2:
            self._t.convs.pop(rec[1], None)
        else:
            raise ValueError("bad record")

    def _append(self, records: Sequence[list[Any]], *, sync: bool = True) -> None:
        if self._fd is None:
            raise CorruptHistory("history is closed")
        out = bytearray()
        for rec in records:
            nonce = self._rng(AEAD_NONCE_SIZE)
            blob = nonce + aead_encrypt(self._key, nonce, msgpack.packb(rec), _AD)
            out += _LEN.pack(len(blob)) + blob
        view = memoryview(bytes(out))
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if sync:
            os.fsync(self._fd)

    # --- HistoryStore ---------------------------------------------------------------------

    def add(self, messages: Sequence[StoredMessage]) -> list[bool]:
        fresh = [m for m in messages if not self._has(m)]
        if fresh:
            self._append([_to_wire(m) for m in fresh])
        return [self._t.add(m) for m in messages]

    def _has(self, m: StoredMessage) -> bool:
        return (m.direction, m.id) in self._t.convs.get(m.contact_id, {})

    def set_state(self, contact_id: str, message_id: str, state: DeliveryState) -> None:
        # Not fsynced on its own: a state change is advisory and reaches the disk with the
        # next add (a crash can at worst show a sent message as queued).
        self._append([[1, contact_id, message_id, state]], sync=False)
        self._t.set_state(contact_id, message_id, state)

    def messages(self, contact_id: str, *, limit: int | None = None) -> list[StoredMessage]:
        return self._t.messages(contact_id, limit)

    def forget(self, contact_id: str) -> None:
        # Append-only: the record is superseded, and the file is compacted on wipe. A full
        # rewrite per deletion would cost more than the privacy it buys on a journaling disk.
        self._append([[2, contact_id]])
        self._t.convs.pop(contact_id, None)

    def wipe(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                size = os.fstat(fd).st_size
                os.lseek(fd, 0, os.SEEK_SET)
                os.pwrite(fd, bytes(size), 0)
                os.fsync(fd)
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        self._t.convs.clear()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._t.convs.clear()

    def __repr__(self) -> str:
        return "EncryptedFileHistory(<secret>)"
