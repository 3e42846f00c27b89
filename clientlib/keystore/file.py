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

    __slots__ = ("_header", "_key", "_lock", "_path", "_rng", "_table")

    def __init__(
        self,
        path: Path,
        key: bytes,
        header: _Header,
        table: EntryTable,
        rng: RNG,
        lock: _Lock,
        *,
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

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: bytes,
        *,
        rng: RNG,
        opslimit: int = OPSLIMIT_MODERATE,
        memlimit: int = MEMLIMIT_MODERATE,
    ) -> Self:
        """Create an empty keystore at ``path`` and write it to disk.

        Args:
            path: the keystore file; its directory must exist.
            passphrase: the user's passphrase as bytes (encode text as UTF-8 first).
            rng: ``rng(n)`` returns ``n`` random bytes (``os.urandom`` in production).
            opslimit, memlimit: Argon2id costs, as ``nacl.pwhash.argon2id`` constants
                (``memlimit`` in bytes, a multiple of 1024), at least INTERACTIVE
                (:data:`MIN_OPSLIMIT`, :data:`MIN_MEMLIMIT`). The MODERATE defaults take
                about a second.

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
        check_passphrase_strength(passphrase)
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
        """Open and decrypt an existing keystore. Nothing is written, even on failure.

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
        header, key, table = _load(raw, passphrase)
        # Lock only after a successful decrypt (a failed open creates nothing), then re-read:
        # a previous holder may have saved between our read and our lock.
        lock = _Lock(p)
        try:
            again = _read(p)
            if again != raw:
                fresh = _Header.parse(again)
                same_kdf = (fresh.salt, fresh.opslimit, fresh.memlimit) == (
                    header.salt,
                    header.opslimit,
                    header.memlimit,
                )
                header, key, table = _load(again, passphrase, key if same_kdf else None)
        except BaseException:
            lock.release()
            raise
        return cls(p, key, header, table, rng, lock, _token=_TOKEN)

    # -- Keystore protocol ------------------------------------------------------------------

    def _live(self) -> bytes:
        if self._key is None:
            raise KeystoreClosed
        return self._key

    def get(self, namespace: str, key: bytes) -> bytes | None:
        self._live()
        return self._table.get(namespace, key)

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        self._live()
        self._table.put(namespace, key, value)

    def delete(self, namespace: str, key: bytes) -> None:
        self._live()
        self._table.delete(namespace, key)

    def items(self, namespace: str) -> list[tuple[bytes, bytes]]:
        self._live()
        return self._table.items(namespace)

    def save(self) -> None:
        """Encrypt the current contents under a fresh nonce and replace the file atomically.

        On failure the previous file is intact and the in-memory contents are unchanged.
        """
        key = self._live()
        body = _encode_body(self._table.snapshot())
        if HEADER_SIZE + len(body) + AEAD_TAG_SIZE > MAX_KEYSTORE_SIZE:
            raise KeystoreError("keystore contents exceed MAX_KEYSTORE_SIZE")
        h = self._header
        header = _Header(h.opslimit, h.memlimit, h.salt, _draw(self._rng, AEAD_NONCE_SIZE))
        ad = header.encode()
        _atomic_write(self._path, ad + aead_encrypt(key, header.nonce, body, ad))
        self._header = header

    def change_passphrase(
        self,
        new_passphrase: bytes,
        *,
        opslimit: int | None = None,
        memlimit: int | None = None,
    ) -> None:
        """Re-encrypt the keystore under a new passphrase (a new salt, then :meth:`save`).

        The costs default to the file's current ones (raised to INTERACTIVE if they were
        lower). On failure the file and the handle are unchanged.

        Raises:
            WeakPassphrase: the new passphrase is too short or guessable; nothing written.
            KeystoreClosed: the handle was closed.
            KeystoreError: the file cannot be written.
            ValueError: costs out of range or below INTERACTIVE.
        """
        self._live()
        _check_passphrase(new_passphrase)
        h = self._header
        ops = opslimit if opslimit is not None else h.opslimit
        mem = memlimit if memlimit is not None else h.memlimit
        if not _test_kdf_allowed():
            ops, mem = max(ops, MIN_OPSLIMIT), max(mem, MIN_MEMLIMIT)
        _check_new_costs(ops, mem)
        check_passphrase_strength(new_passphrase)
        salt = _draw(self._rng, SALT_SIZE)
        key = _derive(new_passphrase, salt, ops, mem)
        old_key, old_header = self._key, self._header
        self._key, self._header = key, _Header(ops, mem, salt, b"")
        try:
            self.save()
        except BaseException:
            self._key, self._header = old_key, old_header
            raise

    def wipe(self) -> None:
        """Overwrite the file with zeros, fsync, unlink it (and the lock file), and close.

        This defeats casual recovery on ordinary filesystems. It cannot guarantee erasure on
        SSDs (wear levelling), copy-on-write or snapshotting filesystems, or from backups:
        the passphrase is what protects those copies.
        """
        self._live()
        try:
            try:
                fd = os.open(self._path, os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                pass
            else:
                try:
                    remaining = os.fstat(fd).st_size
                    zeros = bytes(min(remaining, 64 * 1024))
                    while remaining > 0:
                        remaining -= os.write(fd, zeros[:remaining])
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._path.unlink()
                fsync_dir(self._path.parent)
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
        return self._path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._key is None else "open"
        return f"<FileKeystore {str(self._path)!r} {state}>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("FileKeystore cannot be pickled")


_TOKEN: Final = object()


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
