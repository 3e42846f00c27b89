"""Fuzz the client's decoders of untrusted or stored bytes: invitation links (§21.2), prekey
bundles (§11.1), attachment chunks (§25.2), keystore files and history files (§23.4).
Each returns a valid result or raises its documented error; nothing else escapes, and a
refused file is left as it was."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
from fuzzkit import binary, client_vectors, fuzz, mutated
from hypothesis import given
from hypothesis import strategies as st

from clientlib.client.history import CorruptHistory, EncryptedFileHistory
from clientlib.client.invite import InvalidInvitation, Invitation
from clientlib.client.types import StoredMessage
from clientlib.crypto import IdentityKeyPair, PreKeyKind, PreKeyPair
from clientlib.crypto.attachment import AttachmentDecryptor, AttachmentEncryptor
from clientlib.errors import AttachmentCorrupt, KeyValidationError
from clientlib.keystore import CorruptKeystore, FileKeystore, UnsupportedKeystoreVersion
from clientlib.keystore.errors import WrongPassphrase
from clientlib.session import PreKeyBundle

VECTORS = client_vectors()
LINKS = [VECTORS[k]["link"] for k in ("invitation", "invitation_v2", "invitation_v3")]


@fuzz(600)
@given(
    st.one_of(
        st.text(max_size=120),
        st.sampled_from(LINKS)
        .map(lambda s: s.encode())
        .flatmap(lambda b: mutated([b]).map(lambda m: m.decode("utf-8", "replace"))),
        st.builds(
            lambda a, b: a + b,
            st.sampled_from([s.split("#")[0] + "#" for s in LINKS]),
            st.text(max_size=120),
        ),
    )
)
def test_invitation_links(link: str) -> None:
    try:
        invitation = Invitation.parse(link)
    except InvalidInvitation:
        return
    assert Invitation.parse(invitation.link) == invitation


def _bundles() -> list[bytes]:
    rng = os.urandom
    ident = IdentityKeyPair.generate(rng)
    spk = PreKeyPair.generate(ident, PreKeyKind.X25519_SIGNED, 1, rng)
    kem = PreKeyPair.generate(ident, PreKeyKind.MLKEM_ONE_TIME, 100, rng)
    opk = PreKeyPair.generate(ident, PreKeyKind.X25519_ONE_TIME, 200, rng)
    return [
        PreKeyBundle.build(
            ident.public, spk.public_record, kem.public_record, opk.public_record
        ).to_bytes(),
        PreKeyBundle.build(ident.public, spk.public_record, kem.public_record, None).to_bytes(),
    ]


BUNDLES = _bundles()


@fuzz(300)
@given(st.one_of(binary(max_size=300), mutated(BUNDLES)))
def test_prekey_bundles(data: bytes) -> None:
    try:
        bundle = PreKeyBundle.parse(data)
    except KeyValidationError:
        return
    assert bundle.to_bytes() == data  # only the exact, correctly signed bytes parse


KEY = bytes(range(32))
PLAIN = os.urandom(5000)
CHUNK = 4096


def _encrypt() -> bytes:
    enc = AttachmentEncryptor(KEY, len(PLAIN), CHUNK)
    return enc.update(PLAIN) + enc.finish()


BLOB = _encrypt()
BLOB_SHA = hashlib.sha256(BLOB).digest()


@fuzz(300)
@given(
    st.one_of(mutated([BLOB]), binary(max_size=9000)),
    st.lists(st.integers(1, 5000), max_size=4),
)
def test_attachment_chunks(data: bytes, cuts: list[int]) -> None:
    """Any ciphertext, fed in any pieces: the plaintext exactly, or AttachmentCorrupt."""
    dec = AttachmentDecryptor(KEY, len(PLAIN), CHUNK, ciphertext_sha256=BLOB_SHA)
    out = b""
    pos = 0
    try:
        for cut in sorted(cuts):
            out += dec.update(data[pos:cut])
            pos = max(pos, cut)
        out += dec.update(data[pos:])
        out += dec.finish()
    except AttachmentCorrupt:
        assert data != BLOB
        return
    assert data == BLOB and out == PLAIN


@fuzz(100)
@given(
    st.integers(0, 2**40),
    st.sampled_from([1, 100, 4095, 4096, 1 << 20, 3 << 12]),
    binary(min_size=0, max_size=64),
)
def test_attachment_descriptor_values(size: int, chunk: int, cd: bytes) -> None:
    """A descriptor's size and chunk size come from a peer: any values are refused cleanly."""
    try:
        dec = AttachmentDecryptor(KEY, size, chunk, ciphertext_sha256=cd)
        dec.update(BLOB[:100])
        dec.finish()
    except AttachmentCorrupt:
        return
    raise AssertionError("a truncated blob finished")


PASS = b"correct horse battery staple"
FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}


def _stores() -> tuple[Path, bytes, bytes]:
    """A keystore with a history of a few messages, as the client writes them."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-ks-"))
    ks_path = root / "ks"
    FileKeystore.create(ks_path, PASS, rng=os.urandom, **FAST).close()
    ks = FileKeystore.open(ks_path, PASS, rng=os.urandom)
    history = EncryptedFileHistory(root / "ks.history", ks, rng=os.urandom)
    history.add(
        [StoredMessage("c1", f"{i:032x}", "in", f"text {i}", i, i, "received") for i in range(4)]
    )
    ks.save()
    history.close()
    ks.close()
    return root, ks_path.read_bytes(), (root / "ks.history").read_bytes()


ROOT, KEYSTORE, HISTORY = _stores()
KEYSTORE_ERRORS = (CorruptKeystore, UnsupportedKeystoreVersion, WrongPassphrase)


@fuzz(60)
@given(st.one_of(mutated([KEYSTORE]), binary(max_size=200)))
def test_keystore_files(data: bytes) -> None:
    """A damaged keystore file is refused with a keystore error, and left as it was."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ks"
        path.write_bytes(data)
        try:
            FileKeystore.open(path, PASS, rng=os.urandom).close()
        except KEYSTORE_ERRORS:
            assert path.read_bytes() == data
            return
        assert data[: len(KEYSTORE)] == KEYSTORE  # authenticated: the original bytes


@fuzz(60)
@given(mutated([HISTORY]))
def test_history_files(data: bytes) -> None:
    """A damaged history file: its records read back intact, or CorruptHistory and
    nothing changed (neither the file nor the keystore)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "stores"
        shutil.copytree(ROOT, copy)  # the keystore and its slot file, as written
        path = copy / "ks.history"
        path.write_bytes(data)
        ks = FileKeystore.open(copy / "ks", PASS, rng=os.urandom)
        try:
            history = EncryptedFileHistory(path, ks, rng=os.urandom)
        except CorruptHistory:
            ks.close()
            assert path.read_bytes() == data
            assert (copy / "ks").read_bytes() == KEYSTORE
            return
        try:
            texts = [m.text for m in history.messages("c1")]
            assert set(texts) <= {f"text {i}" for i in range(4)}
        finally:
            history.close()
            ks.close()
