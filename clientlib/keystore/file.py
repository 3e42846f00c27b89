"""Encrypted single-file keystore: Argon2id key derivation, XChaCha20-Poly1305, atomic writes.

File format, version 1 (all integers unsigned big-endian)::

    offset  size  field
    0       4     magic      b"BRKS"
    4       1     version    0x01 (0x00 is reserved; > 0x01 is "created by a newer version")
    5       4     opslimit   Argon2id time cost (libsodium ``opslimit``), 1..MAX_OPSLIMIT
    9       4     memlimit   Argon2id memory cost in KiB (libsodium ``memlimit`` / 1024),
                             MEMLIMIT_MIN/1024..MAX_MEMLIMIT/1024
    13      16    salt       random per file, fixed for the file's lifetime
    29      24    nonce      random, fresh on every save
    53      n+16  ciphertext crypto_aead_xchacha20poly1305_ietf_encrypt(body, ad=bytes[0:53])

    key  = crypto_pwhash argon2id(32 bytes, passphrase, salt, opslimit, memlimit * 1024)
    body = msgpack map {namespace (str): {key (bin): value (bin)}}, namespaces and keys sorted,
           no empty namespace maps

The whole 53-byte header is the AEAD associated data, so the parameters, salt and version
are authenticated (after the key is derived). Before derivation the parameters are only
range-checked, which bounds the work a hostile file can demand. The body is decoded
strictly: exactly one msgpack value, no extension types, no duplicate keys, exact types.

Errors: a short file, bad magic, reserved version, out-of-range parameters or a malformed
(decrypted) body raise :class:`CorruptKeystore`; a newer version raises
:class:`UnsupportedKeystoreVersion`; an AEAD failure raises :class:`WrongPassphrase`, whose
message says "wrong passphrase or corrupted file" because the two cannot be told apart.
A failed ``open`` writes nothing.

Writes are atomic and crash-safe: a temp file (mode 0600) in the same directory is written
and ``fsync``-ed, ``os.replace``-d over the keystore, then the directory is ``fsync``-ed. A
crash leaves either the old or the new file, plus at worst a stray ``.<name>.*.tmp``.

Concurrency: each open handle holds an exclusive ``flock`` on ``<name>.lock`` beside the
file, so a second handle (in any process) gets :class:`KeystoreLocked` instead of silently
overwriting the first one's changes. The lock file is left in place (removing it is racy),
except by :meth:`FileKeystore.wipe`.

Duress slot (protocol.md §23.6): beside every keystore lies ``<name>.slot``, exactly
:data:`SLOT_SIZE` bytes. Without a duress passphrase it is a keystore header (same costs,
random salt and nonce) followed by random bytes; with one, it is a keystore file of the same
format whose body is padded (namespace ``~pad``) to the same size: the *decoy*. ``open``
always derives two keys (the file's and the slot's) and always tries both AEADs, so the time
of an open does not say which one opened, and the slot file never changes size. A decoy
marked *wipe* replaces the real keystore at its first open: the real file and its history
are overwritten and unlinked, the decoy becomes the keystore, the slot is random again.
Namespaces beginning with ``~`` belong to the keystore itself and are refused to callers.

Memory hygiene is best effort: Python cannot zero ``bytes``; ``close()`` drops references.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import struct
import tempfile
from pathlib import Path
from typing import Any, Final, Self

import msgpack
import nacl.exceptions
import nacl.pwhash.argon2id as _argon2id

from clientlib.crypto.keys import RNG
from clientlib.crypto.primitives import (
    AEAD_KEY_SIZE,
    AEAD_NONCE_SIZE,
    AEAD_TAG_SIZE,
    aead_decrypt,
    aead_encrypt,
    ct_eq,
)
from clientlib.errors import DecryptionError, KeystoreError, WireError
from clientlib.keystore.base import MAX_NAMESPACE_SIZE, EntryTable
from clientlib.keystore.errors import (
    CorruptKeystore,
    KeystoreClosed,
    KeystoreExists,
    KeystoreLocked,
    KeystoreNotFound,
    UnsupportedKeystoreVersion,
    WeakPassphrase,
    WrongPassphrase,
)
from clientlib.keystore.policy import check_passphrase_strength
from clientlib.wire.codec import unpack_strict

__all__ = [
    "HEADER_SIZE",
    "KEYSTORE_VERSION",
    "MAGIC",
    "MAX_KEYSTORE_SIZE",
    "MAX_MEMLIMIT",
    "MAX_OPSLIMIT",
    "MIN_MEMLIMIT",
    "MIN_OPSLIMIT",
    "SLOT_SIZE",
    "FileKeystore",
]

MAGIC: Final = b"BRKS"
KEYSTORE_VERSION: Final = 1
SALT_SIZE: Final = _argon2id.SALTBYTES  # 16
_PARAMS = struct.Struct(">II")
HEADER_SIZE: Final = len(MAGIC) + 1 + _PARAMS.size + SALT_SIZE + AEAD_NONCE_SIZE  # 53
_MIN_FILE_SIZE: Final = HEADER_SIZE + AEAD_TAG_SIZE

OPSLIMIT_MODERATE: Final = _argon2id.OPSLIMIT_MODERATE
MEMLIMIT_MODERATE: Final = _argon2id.MEMLIMIT_MODERATE
#: The least cost :meth:`FileKeystore.create` and :meth:`FileKeystore.change_passphrase`
#: accept: libsodium's INTERACTIVE (2 passes, 64 MiB). Cheaper costs (down to Argon2id's
#: minimum, about 0.04 ms a guess) exist only for the test suite, behind a private switch
#: (:func:`_test_kdf_allowed`). Opening accepts any file within the MAX_* bounds.
MIN_OPSLIMIT: Final = _argon2id.OPSLIMIT_INTERACTIVE
MIN_MEMLIMIT: Final = _argon2id.MEMLIMIT_INTERACTIVE
#: Upper bounds accepted from a file before its header is authenticated, so a hostile or
#: damaged file cannot make ``open`` run for hours or allocate terabytes. 4x libsodium's
#: SENSITIVE time cost, and SENSITIVE's 1 GiB of memory.
MAX_OPSLIMIT: Final = 4 * _argon2id.OPSLIMIT_SENSITIVE
MAX_MEMLIMIT: Final = _argon2id.MEMLIMIT_SENSITIVE
#: Hundreds of sessions at up to 256 KiB each (MAX_SESSION_RECORD_SIZE) fit with room to spare;
#: anything larger is not a keystore this library wrote.
MAX_KEYSTORE_SIZE: Final = 64 * 1024 * 1024


#: Size of the duress slot file ``<name>.slot`` (header included), with or without a decoy.
SLOT_SIZE: Final = 256 * 1024
#: Namespace of the keystore's own entries in a real keystore (the duress slot's key).
_OWN: Final = "~keystore"
#: Namespace of the padding that brings a decoy body to the slot size.
_PAD: Final = "~pad"
#: The least length of a passphrase accepted with ``allow_weak`` (below it, even forced
#: passphrases are refused).
MIN_FORCED_LENGTH: Final = 8


def slot_path(path: Path) -> Path:
    """The duress slot file of the keystore at ``path``."""
    return path.with_name(path.name + ".slot")


def _check_params(opslimit: int, memlimit: int) -> bool:
    return (
        _argon2id.OPSLIMIT_MIN <= opslimit <= MAX_OPSLIMIT
        and _argon2id.MEMLIMIT_MIN <= memlimit <= MAX_MEMLIMIT
        and memlimit % 1024 == 0
    )


def _test_kdf_allowed() -> bool:
    """Whether costs below MIN_OPSLIMIT/MIN_MEMLIMIT may be used: only when the test suite
    set ``CLIENTLIB_INSECURE_TEST_KDF=1`` (tests/conftest.py). Not a public API."""
    return os.environ.get("CLIENTLIB_INSECURE_TEST_KDF") == "1"


def _check_new_costs(opslimit: object, memlimit: object) -> None:
    if type(opslimit) is not int or type(memlimit) is not int:
        raise TypeError("opslimit and memlimit must be int")
    if not _check_params(opslimit, memlimit):
        raise ValueError("opslimit/memlimit out of range (memlimit is bytes, multiple of 1024)")
    if (opslimit < MIN_OPSLIMIT or memlimit < MIN_MEMLIMIT) and not _test_kdf_allowed():
        raise ValueError(
            "opslimit/memlimit below the INTERACTIVE cost (2 passes, 64 MiB) are refused"
        )


def _draw(rng: RNG, n: int) -> bytes:
    out = rng(n)
    if type(out) is not bytes or len(out) != n:
        raise ValueError("rng returned the wrong number of bytes")
    return out


def _derive(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    try:
        key: bytes = _argon2id.kdf(
            AEAD_KEY_SIZE, passphrase, salt, opslimit=opslimit, memlimit=memlimit
        )
    except (nacl.exceptions.CryptoError, MemoryError, RuntimeError) as exc:
        raise KeystoreError("key derivation failed (not enough memory?)") from exc
    return key


class _Header:
    __slots__ = ("memlimit", "nonce", "opslimit", "salt")

    def __init__(self, opslimit: int, memlimit: int, salt: bytes, nonce: bytes) -> None:
        self.opslimit, self.memlimit, self.salt, self.nonce = opslimit, memlimit, salt, nonce

    def encode(self) -> bytes:
        return b"".join(
            (
                MAGIC,
                bytes((KEYSTORE_VERSION,)),
                _PARAMS.pack(self.opslimit, self.memlimit // 1024),
                self.salt,
                self.nonce,
            )
        )

    @classmethod
    def parse(cls, raw: bytes) -> _Header:
        """Check everything that can be checked before deriving the key."""
        if len(raw) < len(MAGIC) + 1 or raw[: len(MAGIC)] != MAGIC:
            raise CorruptKeystore("not a blindrelay keystore file (bad magic or truncated)")
        version = raw[len(MAGIC)]
        if version > KEYSTORE_VERSION:
            raise UnsupportedKeystoreVersion(version, KEYSTORE_VERSION)
        if version == 0:
            raise CorruptKeystore("keystore format version 0 is reserved")
        if len(raw) < _MIN_FILE_SIZE:
            raise CorruptKeystore("keystore file is truncated")
        pos = len(MAGIC) + 1
        opslimit, mem_kib = _PARAMS.unpack_from(raw, pos)
        memlimit = mem_kib * 1024
        if not _check_params(opslimit, memlimit):
            raise CorruptKeystore("keystore key-derivation parameters are out of range")
        pos += _PARAMS.size
        salt = raw[pos : pos + SALT_SIZE]
        nonce = raw[pos + SALT_SIZE : HEADER_SIZE]
        return cls(opslimit, memlimit, salt, nonce)


class _BadBody(Exception):
    """The decrypted body does not have the documented shape."""


def _encode_body(data: dict[str, dict[bytes, bytes]]) -> bytes:
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


def _decode_body(body: bytes) -> dict[str, dict[bytes, bytes]]:
    try:
        obj = unpack_strict(body)
        if type(obj) is not dict:
            raise _BadBody
        for namespace, entries in obj.items():
            if type(namespace) is not str or type(entries) is not dict:
                raise _BadBody
            if not 0 < len(namespace.encode("utf-8")) <= MAX_NAMESPACE_SIZE:
                raise _BadBody
            for key, value in entries.items():
                if type(key) is not bytes or type(value) is not bytes:
                    raise _BadBody
    except (_BadBody, WireError):
        raise CorruptKeystore("keystore contents are malformed") from None
    return obj


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_KEYSTORE_SIZE:
                raise CorruptKeystore("keystore file is larger than any valid keystore")
            raw = f.read(MAX_KEYSTORE_SIZE + 1)
    except FileNotFoundError:
        raise KeystoreNotFound from None
    except IsADirectoryError:
        raise CorruptKeystore("keystore path is a directory") from None
    except OSError as exc:
        raise KeystoreError("cannot read keystore file") from exc
    if len(raw) > MAX_KEYSTORE_SIZE:
        raise CorruptKeystore("keystore file is larger than any valid keystore")
    return raw


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (fsync the directory)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file 0600, fsync, replace, fsync dir)."""
    directory = path.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise KeystoreError("cannot write keystore file") from exc
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise KeystoreError("cannot write keystore file") from exc
        raise
    try:
        fsync_dir(directory)
    except OSError as exc:
        raise KeystoreError("keystore written but directory sync failed") from exc


class _Lock:
    """An exclusive, non-blocking ``flock`` on ``<keystore>.lock``."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        try:
            self._fd: int | None = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, stat.S_IRUSR | stat.S_IWUSR
            )
        except OSError as exc:
            raise KeystoreError("cannot create keystore lock file") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise KeystoreLocked from None

    def release(self, *, unlink: bool = False) -> None:
        if self._fd is None:
            return
        if unlink:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None


class FileKeystore:
    """A :class:`~clientlib.keystore.base.Keystore` stored in one encrypted file.

    Build it with :meth:`create` or :meth:`open`, never directly. The derived key is kept in
    memory for the handle's lifetime so :meth:`save` does not re-run Argon2id; each save uses
    a fresh nonce from the ``rng`` given at construction.
    """

    __slots__ = ("_header", "_key", "_lock", "_pad", "_path", "_rng", "_table")

    def __init__(
        self,
        path: Path,
        key: bytes,
        header: _Header,
        table: EntryTable,
        rng: RNG,
        lock: _Lock,
        *,
        pad: bool = False,
        _token: object = None,
    ) -> None:
        if _token is not _TOKEN:
            raise TypeError("use FileKeystore.create() or FileKeystore.open()")
        self._path = path
        self._key: bytes | None = key
        self._header = header
        self._table = table
        self._rng = rng
        self._lock = lock
        self._pad = pad  # a decoy: every save is exactly SLOT_SIZE bytes

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: bytes,
        *,
        rng: RNG,
        opslimit: int = OPSLIMIT_MODERATE,
        memlimit: int = MEMLIMIT_MODERATE,
        allow_weak: bool = False,
    ) -> Self:
        """Create an empty keystore at ``path`` and write it to disk (with its slot file).

        Args:
            path: the keystore file; its directory must exist.
            passphrase: the user's passphrase as bytes (encode text as UTF-8 first).
            rng: ``rng(n)`` returns ``n`` random bytes (``os.urandom`` in production).
            opslimit, memlimit: Argon2id costs, as ``nacl.pwhash.argon2id`` constants
                (``memlimit`` in bytes, a multiple of 1024), at least INTERACTIVE
                (:data:`MIN_OPSLIMIT`, :data:`MIN_MEMLIMIT`). The MODERATE defaults take
                about a second.
            allow_weak: accept a passphrase the strength policy refuses (the user insisted),
                as long as it has :data:`MIN_FORCED_LENGTH` characters.

        Raises:
            WeakPassphrase: the passphrase is too short or guessable
                (:mod:`clientlib.keystore.policy`); nothing is written.
            KeystoreExists: ``path`` already exists (it is left untouched).
            KeystoreLocked: another handle holds the keystore.
            KeystoreError: the file cannot be written.
            ValueError: costs out of range or below INTERACTIVE.
        """
        _check_passphrase(passphrase)
        _check_new_costs(opslimit, memlimit)
        _check_strength(passphrase, allow_weak)
        p = Path(path)
        lock = _Lock(p)
        try:
            if p.exists() or p.is_symlink():
                raise KeystoreExists
            salt = _draw(rng, SALT_SIZE)
            key = _derive(passphrase, salt, opslimit, memlimit)
            header = _Header(opslimit, memlimit, salt, b"")
            store = cls(p, key, header, EntryTable(), rng, lock, _token=_TOKEN)
            store.save()
            store._randomise_slot()
        except BaseException:
            lock.release()
            raise
        return store

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        passphrase: bytes,
        *,
        rng: RNG,
    ) -> Self:
        """Open and decrypt an existing keystore. Nothing is written, even on failure
        (except by a duress passphrase set up to wipe, and the slot file of a keystore
        written before slots existed).

        The passphrase is tried against the keystore and its duress slot, always both
        (two Argon2id derivations, two AEAD checks), so a duress open takes the time of a
        normal one. A duress passphrase returns the decoy (:attr:`history_path` is then
        ``None``: the decoy keeps no history file), or, if it was set up to wipe, destroys
        the real keystore and its history and returns the decoy in its place.

        Raises:
            KeystoreNotFound: no file at ``path``.
            CorruptKeystore: truncated, bad magic, out-of-range parameters, malformed body.
            UnsupportedKeystoreVersion: written by a newer version of blindrelay.
            WrongPassphrase: wrong passphrase or a modified file (indistinguishable).
            KeystoreLocked: another handle holds the keystore.
        """
        _check_passphrase(passphrase)
        p = Path(path)
        raw = _read(p)
        main = _Header.parse(raw)
        slot_raw = _read_slot(p)
        slot_header = _slot_header(slot_raw)
        # Both derivations, always, in the same order: the time says nothing about which
        # one (if any) will authenticate. A missing or damaged slot gets a random salt.
        key = _derive(passphrase, main.salt, main.opslimit, main.memlimit)
        if slot_header is not None:
            slot_key = _derive(
                passphrase, slot_header.salt, slot_header.opslimit, slot_header.memlimit
            )
        else:
            slot_key = _derive(passphrase, _draw(rng, SALT_SIZE), main.opslimit, main.memlimit)
        table = _try_load(raw, main, key)
        decoy = _try_load(slot_raw, slot_header, slot_key) if slot_header is not None else None
        if table is None and decoy is None:
            raise WrongPassphrase
        # Lock only after a successful decrypt (a failed open creates nothing), then re-read:
        # a previous holder may have saved between our read and our lock.
        lock = _Lock(p)
        try:
            if table is not None:
                again = _read(p)
                header = main
                if again != raw:
                    fresh = _Header.parse(again)
                    same_kdf = (fresh.salt, fresh.opslimit, fresh.memlimit) == (
                        main.salt,
                        main.opslimit,
                        main.memlimit,
                    )
                    header, key, table = _load(again, passphrase, key if same_kdf else None)
                store = cls(p, key, header, table, rng, lock, _token=_TOKEN)
                if slot_header is None:
                    store._randomise_slot()  # a keystore from before slots: give it one
                return store
            assert decoy is not None and slot_header is not None
            store = cls(
                slot_path(p), slot_key, slot_header, decoy, rng, lock, pad=True, _token=_TOKEN
            )
            if decoy.get(_OWN, b"wipe") is not None:
                store._replace_real(p)
            return store
        except BaseException:
            lock.release()
            raise

    # -- Keystore protocol ------------------------------------------------------------------

    def _live(self) -> bytes:
        if self._key is None:
            raise KeystoreClosed
        return self._key

    def get(self, namespace: str, key: bytes) -> bytes | None:
        self._live()
        _check_own(namespace)
        return self._table.get(namespace, key)

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        self._live()
        _check_own(namespace)
        self._table.put(namespace, key, value)

    def delete(self, namespace: str, key: bytes) -> None:
        self._live()
        _check_own(namespace)
        self._table.delete(namespace, key)

    def items(self, namespace: str) -> list[tuple[bytes, bytes]]:
        self._live()
        _check_own(namespace)
        return self._table.items(namespace)

    def save(self) -> None:
        """Encrypt the current contents under a fresh nonce and replace the file atomically.

        On failure the previous file is intact and the in-memory contents are unchanged.

        Raises:
            KeystoreError: the file cannot be written, or (a decoy) the contents no longer
                fit in :data:`SLOT_SIZE`.
        """
        key = self._live()
        h = self._header
        header = _Header(h.opslimit, h.memlimit, h.salt, _draw(self._rng, AEAD_NONCE_SIZE))
        data = _seal(key, header, self._table.snapshot(), padded=self._pad)
        _atomic_write(self._path, data)
        self._header = header

    def change_passphrase(
        self,
        new_passphrase: bytes,
        *,
        opslimit: int | None = None,
        memlimit: int | None = None,
        allow_weak: bool = False,
    ) -> None:
        """Re-encrypt the keystore under a new passphrase (a new salt, then :meth:`save`).

        The costs default to the file's current ones (raised to INTERACTIVE if they were
        lower). New costs also reset the duress slot to random bytes with the new costs (the
        two files always show the same costs): a duress passphrase is removed and must be
        set again (:meth:`set_duress`). The duress passphrase keeps working across a change
        that keeps the costs. On failure the file and the handle are unchanged.

        Raises:
            WeakPassphrase: the new passphrase is too short or guessable; nothing written.
            KeystoreClosed: the handle was closed.
            KeystoreError: the file cannot be written.
            ValueError: costs out of range or below INTERACTIVE, or the new passphrase is
                the duress passphrase.
        """
        self._live()
        _check_passphrase(new_passphrase)
        h = self._header
        ops = opslimit if opslimit is not None else h.opslimit
        mem = memlimit if memlimit is not None else h.memlimit
        if not _test_kdf_allowed():
            ops, mem = max(ops, MIN_OPSLIMIT), max(mem, MIN_MEMLIMIT)
        _check_new_costs(ops, mem)
        _check_strength(new_passphrase, allow_weak)
        if self._pad:  # a decoy keeps the slot's costs (the slot never changes shape)
            ops, mem = h.opslimit, h.memlimit
        costs_change = (ops, mem) != (h.opslimit, h.memlimit)
        if not self._pad and _opens_slot(self._path, new_passphrase):
            raise ValueError("the new passphrase is the duress passphrase; choose another")
        salt = _draw(self._rng, SALT_SIZE)
        key = _derive(new_passphrase, salt, ops, mem)
        old_key, old_header = self._key, self._header
        self._key, self._header = key, _Header(ops, mem, salt, b"")
        try:
            self.save()
        except BaseException:
            self._key, self._header = old_key, old_header
            raise
        if costs_change and not self._pad:
            self._randomise_slot()

    # -- duress -----------------------------------------------------------------------------

    @property
    def is_decoy(self) -> bool:
        """Whether this handle was opened with the duress passphrase (for the caller's own
        bookkeeping, such as where to keep history; never shown)."""
        return self._pad

    def set_duress(
        self,
        passphrase: bytes,
        decoy: dict[str, dict[bytes, bytes]],
        *,
        wipe: bool = False,
        allow_weak: bool = False,
    ) -> None:
        """Write a decoy keystore, opened by ``passphrase``, into the slot (protocol.md §23.6).

        ``decoy`` is the decoy's contents (``namespace -> key -> value``; a whole client
        state, say a fresh identity). With ``wipe``, the first open with ``passphrase``
        destroys this keystore and its history and leaves the decoy in its place.
        Replaces any earlier duress passphrase.

        Raises:
            WeakPassphrase: as for :meth:`change_passphrase`.
            ValueError: ``passphrase`` opens this keystore too, or this is a decoy.
            KeystoreError: the decoy does not fit in :data:`SLOT_SIZE`, or a write failed.
        """
        key = self._live()
        _check_passphrase(passphrase)
        if self._pad:
            raise ValueError("a decoy cannot have a duress passphrase")
        _check_strength(passphrase, allow_weak)
        h = self._header
        if ct_eq(_derive(passphrase, h.salt, h.opslimit, h.memlimit), key):
            raise ValueError("the duress passphrase must differ from the keystore passphrase")
        table = EntryTable(decoy)
        for ns, _entries in table.snapshot().items():
            if ns.startswith("~"):
                raise ValueError("namespaces beginning with ~ are reserved")
        if wipe:
            table.put(_OWN, b"wipe", b"\x01")
        salt = _draw(self._rng, SALT_SIZE)
        slot_key = _derive(passphrase, salt, h.opslimit, h.memlimit)
        header = _Header(h.opslimit, h.memlimit, salt, _draw(self._rng, AEAD_NONCE_SIZE))
        data = _seal(slot_key, header, table.snapshot(), padded=True)
        _atomic_write(slot_path(self._path), data)

    def clear_duress(self) -> None:
        """Remove the duress passphrase (the slot becomes random bytes again)."""
        self._live()
        if self._pad:
            raise ValueError("a decoy has no duress passphrase")
        self._randomise_slot()

    def _randomise_slot(self) -> None:
        """Write an unused slot: a header with this file's costs, then random bytes."""
        h = self._header
        header = _Header(h.opslimit, h.memlimit, _draw(self._rng, SALT_SIZE), b"")
        header.nonce = _draw(self._rng, AEAD_NONCE_SIZE)
        body = _draw(self._rng, SLOT_SIZE - HEADER_SIZE)
        _atomic_write(slot_path(self._path), header.encode() + body)

    def _replace_real(self, real: Path) -> None:
        """Wipe mode: destroy the real keystore and its history, make this decoy the
        keystore (same key, same costs), and leave a fresh random slot."""
        for victim in companion_files(real):
            _shred(victim)
        _zero(real)  # overwritten in place, then replaced by the decoy below
        self._table.delete(_OWN, b"wipe")
        self._pad = False
        self._path = real
        self.save()
        self._randomise_slot()
        fsync_dir(real.parent)

    def wipe(self) -> None:
        """Overwrite the file (and its slot) with zeros, fsync, unlink them (and the lock
        file), and close.

        This defeats casual recovery on ordinary filesystems. It cannot guarantee erasure on
        SSDs (wear levelling), copy-on-write or snapshotting filesystems, or from backups:
        the passphrase is what protects those copies.
        """
        self._live()
        real = self._path if not self._pad else self._path.with_name(self._path.name[:-5])
        try:
            _shred(real)
            _shred(slot_path(real))
            fsync_dir(real.parent)
        except OSError as exc:
            raise KeystoreError("cannot wipe keystore file") from exc
        finally:
            self._close(unlink_lock=True)

    def close(self) -> None:
        self._close(unlink_lock=False)

    def _close(self, *, unlink_lock: bool) -> None:
        self._key = None
        self._table.clear()
        self._lock.release(unlink=unlink_lock)

    @property
    def path(self) -> Path:
        """The keystore path the caller opened (also for a decoy)."""
        return self._path.with_name(self._path.name[:-5]) if self._pad else self._path

    @property
    def history_path(self) -> Path | None:
        """Where the client keeps this keystore's history file (``<name>.history``), or
        ``None`` for a decoy (whose history stays in memory: a second history file would
        show that a decoy exists)."""
        return None if self._pad else self._path.with_name(self._path.name + ".history")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._key is None else "open"
        return f"<FileKeystore {str(self.path)!r} {state}>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("FileKeystore cannot be pickled")


_TOKEN: Final = object()


def companion_files(path: Path) -> tuple[Path, ...]:
    """The files a client keeps beside a keystore, destroyed with it by a duress wipe."""
    return (
        path.with_name(path.name + ".history"),
        path.with_name(path.name + ".history.compact"),
    )


def _shred(path: Path) -> None:
    """Overwrite a file with zeros, fsync it and unlink it (missing: nothing to do)."""
    if path.exists():
        _zero(path)
        path.unlink(missing_ok=True)


def _zero(path: Path) -> None:
    """Overwrite a file with zeros in place and fsync it (missing: nothing to do)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        remaining = os.fstat(fd).st_size
        zeros = bytes(min(remaining, 64 * 1024))
        while remaining > 0:
            remaining -= os.write(fd, zeros[:remaining])
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_own(namespace: object) -> None:
    if type(namespace) is str and namespace.startswith("~"):
        raise ValueError("namespaces beginning with ~ are reserved for the keystore")


def _check_strength(passphrase: bytes, allow_weak: bool) -> None:
    if not allow_weak:
        check_passphrase_strength(passphrase)
        return
    if len(passphrase.decode("utf-8", "replace")) < MIN_FORCED_LENGTH:
        raise WeakPassphrase(
            f"it has fewer than {MIN_FORCED_LENGTH} characters, the least even when forced"
        )


def _seal(
    key: bytes, header: _Header, data: dict[str, dict[bytes, bytes]], *, padded: bool
) -> bytes:
    ad = header.encode()
    body = _pad_body(data) if padded else _encode_body(data)
    if HEADER_SIZE + len(body) + AEAD_TAG_SIZE > (SLOT_SIZE if padded else MAX_KEYSTORE_SIZE):
        raise KeystoreError("keystore contents exceed their size limit")
    return ad + aead_encrypt(key, header.nonce, body, ad)


def _pad_body(data: dict[str, dict[bytes, bytes]]) -> bytes:
    """The body with a ``~pad`` namespace that makes the sealed file exactly SLOT_SIZE."""
    target = SLOT_SIZE - HEADER_SIZE - AEAD_TAG_SIZE
    n = target - len(_encode_body({**data, _PAD: {b"": b""}}))
    for _ in range(4):
        if n < 0:
            break
        padded = {**data, _PAD: {b"": bytes(n)}}
        body = _encode_body(dict(sorted(padded.items())))
        if len(body) == target:
            return body
        n -= len(body) - target
    raise KeystoreError("the decoy keystore is full (its contents must fit in the slot)")


def _opens_slot(path: Path, passphrase: bytes) -> bool:
    """Whether ``passphrase`` opens the duress slot of the keystore at ``path``."""
    raw = _read_slot(path)
    header = _slot_header(raw)
    if header is None:
        return False
    key = _derive(passphrase, header.salt, header.opslimit, header.memlimit)
    return _try_load(raw, header, key) is not None


def _read_slot(path: Path) -> bytes:
    try:
        with slot_path(path).open("rb") as f:
            return f.read(SLOT_SIZE + 1)
    except OSError:
        return b""


def _slot_header(raw: bytes) -> _Header | None:
    if len(raw) != SLOT_SIZE:
        return None
    try:
        return _Header.parse(raw)
    except KeystoreError:
        return None


def _try_load(raw: bytes, header: _Header | None, key: bytes) -> EntryTable | None:
    """The table of ``raw`` under ``key``, or None if it does not authenticate."""
    if header is None:
        return None
    try:
        body = aead_decrypt(key, header.nonce, raw[HEADER_SIZE:], raw[:HEADER_SIZE])
    except DecryptionError:
        return None
    data = _decode_body(body)
    data.pop(_PAD, None)
    return EntryTable(data)


def _check_passphrase(passphrase: object) -> None:
    if type(passphrase) is not bytes:
        raise TypeError("passphrase must be bytes (encode text as UTF-8)")


def _load(
    raw: bytes, passphrase: bytes, key: bytes | None = None
) -> tuple[_Header, bytes, EntryTable]:
    header = _Header.parse(raw)
    if key is None:
        key = _derive(passphrase, header.salt, header.opslimit, header.memlimit)
    try:
        body = aead_decrypt(key, header.nonce, raw[HEADER_SIZE:], raw[:HEADER_SIZE])
    except DecryptionError:
        raise WrongPassphrase from None
    return header, key, EntryTable(_decode_body(body))
