"""Attachment encryption (protocol.md §25.2): a fresh key per file, Padmé padding, fixed-size
ChaCha20-Poly1305 chunks in the STREAM construction of age (the chunk index and a final flag
in the nonce).

Sans-IO and incremental: :class:`AttachmentEncryptor` turns plaintext pieces into ciphertext
pieces and :class:`AttachmentDecryptor` the reverse, each holding at most one chunk, so
neither side ever holds a whole file. Every failure to decrypt (a truncated, extended,
reordered, substituted or tampered chunk, non-zero padding, a digest that does not match) is
one :class:`~clientlib.errors.AttachmentCorrupt` with a fixed message.

::

    ke      = HKDF-SHA256(ikm = key, salt = 0^32, info = "blindrelay/v1/attachment", L = 32)
    P       = padded_size(size) = padme(max(size, 4096))
    stream  = plaintext || 0^(P - size), cut into chunks of cs bytes (the last 1..cs bytes)
    chunk_i = ChaCha20-Poly1305(ke, nonce = u88be(i) || u8(final_i), stream_i,
                                ad = "blindrelay/v1/attachment-chunk" || 0x00)
    blob    = chunk_0 || chunk_1 || ... (each cs + 16 bytes, the last one shorter)
"""

from __future__ import annotations

import hashlib
from typing import Final, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from clientlib.crypto.primitives import ct_eq, hkdf
from clientlib.errors import AttachmentCorrupt

__all__ = [
    "ATTACHMENT_KEY_SIZE",
    "CHUNK_AD",
    "CHUNK_SIZES",
    "DEFAULT_CHUNK_SIZE",
    "MAX_ATTACHMENT_SIZE",
    "MIN_PADDED_SIZE",
    "TAG_SIZE",
    "AttachmentDecryptor",
    "AttachmentEncryptor",
    "chunk_count",
    "chunk_nonce",
    "ciphertext_size",
    "content_key",
    "padded_size",
    "padme",
]

ATTACHMENT_KEY_SIZE: Final = 32
#: Plaintext bytes per chunk, default: 64 KiB (the chunk is 16 bytes longer).
DEFAULT_CHUNK_SIZE: Final = 65536
#: Chunk sizes a descriptor may name: powers of two from 4 KiB to 1 MiB.
CHUNK_SIZES: Final = frozenset(1 << n for n in range(12, 21))
#: Files smaller than this are padded up to it: small files share one size class.
MIN_PADDED_SIZE: Final = 4096
#: The largest plaintext a descriptor may announce (2^40 bytes; relays set lower limits).
MAX_ATTACHMENT_SIZE: Final = 1 << 40

_KEY_INFO: Final = b"blindrelay/v1/attachment"
#: The associated data of every chunk (the nonce carries index and final flag).
CHUNK_AD: Final = b"blindrelay/v1/attachment-chunk\x00"
TAG_SIZE: Final = 16


def padme(length: int) -> int:
    """Padmé (Nikitin et al., PETS 2019): round ``length`` up so that at most
    ``floor(log2(log2(length))) + 1`` low bits are set; the overhead is at most 12 %.

    Raises:
        ValueError: ``length`` below 2.
    """
    if length < 2:
        raise ValueError("padme is defined from 2")
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 E) + 1
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


def padded_size(size: int) -> int:
    """``P``: the padded length of a ``size``-byte file (protocol.md §25.2)."""
    if not 0 <= size <= MAX_ATTACHMENT_SIZE:
        raise ValueError("attachment size out of range")
    return padme(max(size, MIN_PADDED_SIZE))


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-padded_size(size) // chunk_size)


def ciphertext_size(size: int, chunk_size: int) -> int:
    """The blob's length: ``P + 16`` per chunk."""
    _check_chunk_size(chunk_size)
    return padded_size(size) + TAG_SIZE * chunk_count(size, chunk_size)


def content_key(key: bytes) -> bytes:
    """``ke``: the chunk key derived from the descriptor's key."""
    if len(key) != ATTACHMENT_KEY_SIZE:
        raise ValueError("an attachment key is 32 bytes")
    return hkdf(key, salt=bytes(32), info=_KEY_INFO, length=32)


def chunk_nonce(index: int, final: bool) -> bytes:
    """``u88be(index) || u8(final)`` (12 bytes, RFC 8439 nonce)."""
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size not in CHUNK_SIZES:
        raise ValueError("chunk size must be a power of two from 4096 to 1048576")


class AttachmentEncryptor:
    """Encrypt one file of a known ``size`` incrementally.

    Feed exactly ``size`` plaintext bytes in pieces of any length with :meth:`update`, then
    call :meth:`finish`; the concatenated outputs are the blob. ``plaintext_sha256`` (the hash
    under the franking commitment, §15.1) and ``ciphertext_sha256`` (the descriptor's ``cd``)
    are available after :meth:`finish`. Encryption is deterministic in ``key``: encrypting the
    same file again yields the same bytes (which is how an upload resumes).

    Raises (update/finish):
        ValueError: more or fewer bytes than ``size``, or use after :meth:`finish`.
    """

    def __init__(self, key: bytes, size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        _check_chunk_size(chunk_size)
        self._aead = ChaCha20Poly1305(content_key(key))
        self.size = size
        self.chunk_size = chunk_size
        self._padded = padded_size(size)
        self._total = ciphertext_size(size, chunk_size)
        self._seen = 0
        self._index = 0
        self._buf = bytearray()
        self._pt_hash = hashlib.sha256()
        self._ct_hash = hashlib.sha256()
        self._done = False

    @property
    def ciphertext_size(self) -> int:
        return self._total

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._done:
            raise ValueError("the encryptor is finished")
        if self._seen + len(data) > self.size:
            raise ValueError("more bytes than the announced size")
        self._seen += len(data)
        self._pt_hash.update(data)
        self._buf += data
        return self._drain(final=False)

    def finish(self) -> bytes:
        if self._done:
            raise ValueError("the encryptor is finished")
        if self._seen != self.size:
            raise ValueError("fewer bytes than the announced size")
        self._done = True
        self._buf += bytes(self._padded - self._seen)
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> bytes:
        """Seal every whole chunk of the buffer but the last (it may be the final one);
        with ``final``, the last one too."""
        cs = self.chunk_size
        buf = self._buf
        view = memoryview(buf)
        out = []
        pos = 0
        while len(buf) - pos > cs:
            out.append(self._seal(view[pos : pos + cs], final=False))
            pos += cs
        if final:
            out.append(self._seal(view[pos:], final=True))
            pos = len(buf)
        view.release()
        del buf[:pos]
        return b"".join(out)

    def _seal(self, piece: bytes | memoryview, *, final: bool) -> bytes:
        ct = self._aead.encrypt(chunk_nonce(self._index, final), piece, CHUNK_AD)
        self._index += 1
        self._ct_hash.update(ct)
        return ct

    @property
    def plaintext_sha256(self) -> bytes:
        if not self._done:
            raise ValueError("not finished")
        return self._pt_hash.digest()

    @property
    def ciphertext_sha256(self) -> bytes:
        if not self._done:
            raise ValueError("not finished")
        return self._ct_hash.digest()


class AttachmentDecryptor:
    """Decrypt one blob incrementally and check it against its descriptor.

    Feed ciphertext in pieces of any length with :meth:`update` (plaintext comes out, the
    padding held back), then :meth:`finish`, which checks that the final chunk came last,
    that every padding byte is zero, and the ciphertext digest ``cd`` and (if given) the
    plaintext hash under the franking commitment. Until :meth:`finish` returns, nothing that
    came out may be trusted as the whole file: write it to a temporary file and rename it
    into place only after :meth:`finish`.

    Raises (update/finish):
        AttachmentCorrupt: anything wrong, one message whatever it was.
    """

    def __init__(
        self,
        key: bytes,
        size: int,
        chunk_size: int,
        *,
        ciphertext_sha256: bytes,
        plaintext_sha256: bytes | None = None,
    ) -> None:
        try:
            _check_chunk_size(chunk_size)
            self._aead = ChaCha20Poly1305(content_key(key))
            self._padded = padded_size(size)
        except ValueError:
            raise AttachmentCorrupt() from None
        self.size = size
        self.chunk_size = chunk_size
        self._count = -(-self._padded // chunk_size)
        self._total = self._padded + TAG_SIZE * self._count
        self._cd = ciphertext_sha256
        self._ph = plaintext_sha256
        self._index = 0
        self._pos = 0  # plaintext stream bytes produced (padding included)
        self._fed = 0
        self._buf = bytearray()
        self._ct_hash = hashlib.sha256()
        self._pt_hash = hashlib.sha256()
        self._failed = False

    @property
    def ciphertext_size(self) -> int:
        return self._total

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._failed:
            raise AttachmentCorrupt()
        self._fed += len(data)
        if self._fed > self._total:
            self._fail()
        self._ct_hash.update(data)
        self._buf += data
        step = self.chunk_size + TAG_SIZE
        buf = self._buf
        view = memoryview(buf)
        out = []
        pos = 0
        while len(buf) - pos >= step and self._index < self._count - 1:
            out.append(self._open(view[pos : pos + step], final=False))
            pos += step
        view.release()
        del buf[:pos]
        return b"".join(out)

    def finish(self) -> bytes:
        if self._failed or self._fed != self._total or self._index != self._count - 1:
            self._fail()
        last = self._open(bytes(self._buf), final=True)
        self._buf = bytearray()
        if not ct_eq(self._ct_hash.digest(), self._cd):
            self._fail()
        if self._ph is not None and not ct_eq(self._pt_hash.digest(), self._ph):
            self._fail()
        return last

    def _open(self, chunk: bytes | memoryview, *, final: bool) -> bytes:
        try:
            piece = self._aead.decrypt(chunk_nonce(self._index, final), chunk, CHUNK_AD)
        except InvalidTag:
            self._fail()
        self._index += 1
        start, self._pos = self._pos, self._pos + len(piece)
        keep = max(0, min(len(piece), self.size - start))
        data, pad = piece[:keep], piece[keep:]
        if pad.count(0) != len(pad):
            self._fail()
        self._pt_hash.update(data)
        return data

    def _fail(self) -> NoReturn:
        self._failed = True
        raise AttachmentCorrupt()
