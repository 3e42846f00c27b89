"""Generate ``attachment-v1.json``: vectors for attachment encryption (protocol.md §25.2), the
attachment capability hash (§4.8, revision 7) and the ``file`` content (§25.3).
Deterministic: every random byte comes from the DRBG of ``generate_vectors.py`` seeded with
``"attachment-v1"``. ``tests/conformance/test_attachment_vectors.py`` checks every value
through the client and re-derives it from protocol.md alone (``cryptography`` HKDF,
libsodium's ChaCha20-Poly1305 through PyNaCl, stdlib ``hashlib``).

Run: ``python tests/vectors/generate_attachment_vectors.py`` (rewrites the file).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

from generate_vectors import DRBG  # noqa: E402

from clientlib.client.content import FileMessage  # noqa: E402
from clientlib.crypto.attachment import (  # noqa: E402
    AttachmentEncryptor,
    chunk_nonce,
    content_key,
    padded_size,
    padme,
)
from clientlib.wire import attachment_capability_hash, capability_hash  # noqa: E402

OUT = HERE / "attachment-v1.json"


def h(b: bytes) -> str:
    return b.hex()


def encrypt(key: bytes, data: bytes, cs: int) -> tuple[bytes, AttachmentEncryptor]:
    enc = AttachmentEncryptor(key, len(data), cs)
    blob = enc.update(data) + enc.finish()
    return blob, enc


def build() -> dict[str, Any]:
    rng = DRBG(b"attachment-v1")
    padding = [
        {"size": n, "padme": padme(max(n, 2)), "padded": padded_size(n)}
        for n in (0, 1, 4095, 4096, 4097, 5000, 65536, 65537, 100_000, 1 << 20, 20 * 2**20 + 1)
    ]
    files = []
    for size, cs in ((0, 4096), (100, 4096), (4096, 4096), (9000, 4096), (5000, 65536)):
        key = rng(32)
        data = rng(size)
        blob, enc = encrypt(key, data, cs)
        step = cs + 16
        chunks = [blob[i : i + step] for i in range(0, len(blob), step)]
        files.append(
            {
                "key": h(key),
                "ke": h(content_key(key)),
                "chunk_size": cs,
                "plaintext": h(data),
                "padded": padded_size(size),
                "nonces": [h(chunk_nonce(i, i == len(chunks) - 1)) for i in range(len(chunks))],
                "chunks": [h(c) for c in chunks],
                "blob_size": len(blob),
                "plaintext_sha256": h(enc.plaintext_sha256),
                "ciphertext_sha256": h(enc.ciphertext_sha256),
            }
        )
    # Invalid blobs, all against file 3 (9,000 bytes, chunk size 4,096: three chunks).
    f = files[3]
    key = bytes.fromhex(f["key"])
    chunks = [bytes.fromhex(c) for c in f["chunks"]]
    other_key = rng(32)
    other, _ = encrypt(other_key, rng(9000), 4096)
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from clientlib.crypto.attachment import CHUNK_AD

    aead = ChaCha20Poly1305(content_key(key))
    data = bytes.fromhex(f["plaintext"])
    padded = data + bytes(f["padded"] - len(data))
    bad_pad = bytearray(padded)
    bad_pad[-1] = 1
    last_bad = aead.encrypt(chunk_nonce(2, True), bytes(bad_pad[8192:]), CHUNK_AD)
    first_final = aead.encrypt(chunk_nonce(0, True), padded[:4096], CHUNK_AD)
    extra = aead.encrypt(chunk_nonce(3, True), bytes(16), CHUNK_AD)
    invalid = [
        {"note": "truncated: last chunk missing", "blob": chunks[0] + chunks[1]},
        {"note": "truncated inside a chunk", "blob": b"".join(chunks)[:-1]},
        {"note": "chunks 0 and 1 swapped", "blob": chunks[1] + chunks[0] + chunks[2]},
        {"note": "chunk 1 from another attachment", "blob": chunks[0] + other[4112:8224] + chunks[2]},
        {"note": "chunk 0 repeated as chunk 1", "blob": chunks[0] + chunks[0] + chunks[2]},
        {"note": "a flipped bit in chunk 2", "blob": chunks[0] + chunks[1] + bytes([chunks[2][0] ^ 1]) + chunks[2][1:]},
        {"note": "a chunk after the final one", "blob": b"".join(chunks) + extra},
        {"note": "non-zero padding byte, correctly sealed", "blob": chunks[0] + chunks[1] + last_bad},
        {"note": "chunk 0 sealed as final, then the rest", "blob": first_final + chunks[1] + chunks[2]},
    ]
    for case in invalid:
        case["blob"] = h(case["blob"])  # type: ignore[arg-type]
    sid, cap = rng(16), rng(32)
    content = FileMessage(
        id=rng(16),
        ts=1_795_000_000,
        blob=rng(16),
        tok=rng(32),
        key=bytes.fromhex(files[4]["key"]),
        cd=bytes.fromhex(files[4]["ciphertext_sha256"]),
        size=5000,
        cs=65536,
        mime="image/jpeg",
        name="photo.jpg",
        text="caption",
        vo=1,
    )
    return {
        "attachment-v1": {
            "padding": padding,
            "files": files,
            "invalid": {"file": 3, "cases": invalid},
            "attachment_capability": {
                "sid": h(sid),
                "cap": h(cap),
                "h": h(capability_hash(sid, cap)),
                "h_att": h(attachment_capability_hash(sid, cap)),
            },
            "content": {"encoded": h(content.encode()), "sha256": h(hashlib.sha256(content.encode()).digest())},
        }
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")
