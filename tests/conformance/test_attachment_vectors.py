"""Attachment vectors (``tests/vectors/attachment-v1.json``, protocol.md §25.2, §25.3, §4.8).

Two implementations meet here: the client's (``clientlib.crypto.attachment``, OpenSSL's
ChaCha20-Poly1305 through ``cryptography``) and one written below from protocol.md alone
(Padmé from its formula, ``cryptography``'s HKDF, libsodium's ChaCha20-Poly1305 through
PyNaCl, stdlib ``hashlib``). Every invalid blob must fail in both, the client with its one
:class:`~clientlib.errors.AttachmentCorrupt`.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clientlib.client.content import FileMessage, decode_content
from clientlib.crypto.attachment import (
    AttachmentDecryptor,
    AttachmentEncryptor,
    ciphertext_size,
    content_key,
    padded_size,
    padme,
)
from clientlib.errors import AttachmentCorrupt
from clientlib.wire import attachment_capability_hash, capability_hash

V = json.loads((Path(__file__).parents[1] / "vectors" / "attachment-v1.json").read_text())[
    "attachment-v1"
]


def x(s: str) -> bytes:
    return bytes.fromhex(s)


# --- from protocol.md §25.2 alone --------------------------------------------------------------


def spec_padme(n: int) -> int:
    e = math.floor(math.log2(n))
    s = math.floor(math.log2(e)) + 1 if e > 0 else 0
    last = e - s
    mask = (1 << last) - 1 if last > 0 else 0
    return (n + mask) & ~mask


def spec_padded(n: int) -> int:
    return spec_padme(max(n, 4096))


def spec_ke(key: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, bytes(32), b"blindrelay/v1/attachment").derive(key)


def spec_decrypt(key: bytes, size: int, cs: int, blob: bytes) -> bytes:
    """Whole-blob decryption from the spec; raises ValueError for anything wrong."""
    ke = spec_ke(key)
    p = spec_padded(size)
    n = -(-p // cs)
    if len(blob) != p + 16 * n:
        raise ValueError("length")
    out = b""
    for i in range(n):
        chunk = blob[i * (cs + 16) : (i + 1) * (cs + 16)]
        nonce = i.to_bytes(11, "big") + bytes([i == n - 1])
        try:
            out += nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
                chunk, b"blindrelay/v1/attachment-chunk\x00", nonce, ke
            )
        except nacl.exceptions.CryptoError:
            raise ValueError("tag") from None
    if any(out[size:]):
        raise ValueError("padding")
    return out[:size]


# --- the vectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", V["padding"], ids=lambda c: str(c["size"]))
def test_padding(case: dict[str, Any]) -> None:
    assert padded_size(case["size"]) == spec_padded(case["size"]) == case["padded"]
    assert padme(max(case["size"], 2)) == spec_padme(max(case["size"], 2)) == case["padme"]


@pytest.mark.parametrize("f", V["files"], ids=lambda f: f"{len(f['plaintext']) // 2}B")
def test_files_both_ways(f: dict[str, Any]) -> None:
    key, data, cs = x(f["key"]), x(f["plaintext"]), f["chunk_size"]
    blob = b"".join(x(c) for c in f["chunks"])
    assert content_key(key) == spec_ke(key) == x(f["ke"])
    assert len(blob) == f["blob_size"] == ciphertext_size(len(data), cs)
    enc = AttachmentEncryptor(key, len(data), cs)
    assert enc.update(data) + enc.finish() == blob
    assert enc.plaintext_sha256 == hashlib.sha256(data).digest() == x(f["plaintext_sha256"])
    assert enc.ciphertext_sha256 == hashlib.sha256(blob).digest() == x(f["ciphertext_sha256"])
    for i, nonce in enumerate(f["nonces"]):
        assert x(nonce) == i.to_bytes(11, "big") + bytes([i == len(f["nonces"]) - 1])
    assert spec_decrypt(key, len(data), cs, blob) == data
    dec = AttachmentDecryptor(
        key, len(data), cs, ciphertext_sha256=x(f["ciphertext_sha256"]),
        plaintext_sha256=x(f["plaintext_sha256"]),
    )
    out = b"".join(dec.update(blob[i : i + 1000]) for i in range(0, len(blob), 1000))
    assert out + dec.finish() == data


@pytest.mark.parametrize("case", V["invalid"]["cases"], ids=lambda c: c["note"])
def test_invalid_blobs_fail(case: dict[str, Any]) -> None:
    f = V["files"][V["invalid"]["file"]]
    key, size, cs = x(f["key"]), len(f["plaintext"]) // 2, f["chunk_size"]
    blob = x(case["blob"])
    with pytest.raises(ValueError):
        spec_decrypt(key, size, cs, blob)
    # Given the blob's own digest, so only the chunk checks can refuse it.
    dec = AttachmentDecryptor(key, size, cs, ciphertext_sha256=hashlib.sha256(blob).digest())
    with pytest.raises(AttachmentCorrupt):
        dec.update(blob)
        dec.finish()


def test_wrong_digest_fails() -> None:
    f = V["files"][3]
    blob = b"".join(x(c) for c in f["chunks"])
    dec = AttachmentDecryptor(
        x(f["key"]), len(f["plaintext"]) // 2, f["chunk_size"], ciphertext_sha256=bytes(32)
    )
    with pytest.raises(AttachmentCorrupt):
        dec.update(blob)
        dec.finish()


def test_attachment_capability_hash() -> None:
    v = V["attachment_capability"]
    sid, cap = x(v["sid"]), x(v["cap"])
    assert capability_hash(sid, cap) == x(v["h"])
    want = hashlib.sha256(b"blindrelay/v1/cap-att" + b"\x00" + sid + cap).digest()
    assert attachment_capability_hash(sid, cap) == want == x(v["h_att"])


def test_file_content() -> None:
    encoded = x(V["content"]["encoded"])
    content = decode_content(encoded)
    assert isinstance(content, FileMessage)
    assert content.encode() == encoded
    assert content.key == x(V["files"][4]["key"]) and content.vo == 1
    assert hashlib.sha256(encoded).hexdigest() == V["content"]["sha256"]
