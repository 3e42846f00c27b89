"""Keys, primitives, prekeys, padding, franking and safety numbers (protocol.md §10, §14-§16)."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from clientlib.crypto import (
    IdentityKeyPair,
    IdentityPublicKey,
    MLKEMKeyPair,
    MLKEMPublicKey,
    PreKeyKind,
    PreKeyPair,
    SignedPreKey,
    X25519KeyPair,
    X25519PublicKey,
    franking_commit,
    franking_verify,
    pad,
    qr_payload,
    safety_number,
    unpad,
    verify_qr_payload,
)
from clientlib.crypto.primitives import (
    aead_decrypt,
    aead_encrypt,
    ed25519_verify,
    hkdf,
    validate_x25519_public,
    x25519,
)
from clientlib.errors import (
    DecryptionError,
    KeyValidationError,
    LocalProtocolError,
    SafetyNumberMismatch,
)
from clientlib.wire.limits import ENVELOPE_BUCKETS

P = 2**255 - 19


def drbg(seed: bytes):
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.sha256(b"test-drbg" + seed + counter.to_bytes(8, "big")).digest()
            counter += 1
        return out[:n]

    return rng


SMALL_ORDER_X25519 = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (P - 1).to_bytes(32, "little"),
]


@pytest.mark.parametrize("point", SMALL_ORDER_X25519)
def test_x25519_small_order_points_rejected(point: bytes) -> None:
    with pytest.raises(KeyValidationError):
        X25519PublicKey.from_bytes(point)


@pytest.mark.parametrize(
    "point",
    [
        P.to_bytes(32, "little"),  # non-canonical 0
        (P + 1).to_bytes(32, "little"),  # non-canonical 1
        (2**255 + 9).to_bytes(32, "little"),  # top bit set
        bytes(31),
        bytes(33),
    ],
)
def test_x25519_noncanonical_and_bad_length_rejected(point: bytes) -> None:
    with pytest.raises(KeyValidationError):
        validate_x25519_public(point)


def test_x25519_zero_shared_secret_rejected() -> None:
    kp = X25519KeyPair.generate(drbg(b"z"))
    with pytest.raises(KeyValidationError):
        x25519(kp.private_bytes(), bytes(32))


@pytest.mark.parametrize(
    "point",
    [
        bytes(32),  # y = 0: order 4
        (1).to_bytes(32, "little"),  # identity, small order
        bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # y=-1
        bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # y=p
        bytes.fromhex(
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
        ),  # order 8
        bytes(31),
    ],
)
def test_ed25519_small_order_and_noncanonical_rejected(point: bytes) -> None:
    with pytest.raises(KeyValidationError):
        IdentityPublicKey.from_bytes(point)


def test_identity_roundtrip_and_x25519_form_agree() -> None:
    a = IdentityKeyPair.generate(drbg(b"a"))
    b = IdentityKeyPair.generate(drbg(b"b"))
    pub = IdentityPublicKey.from_bytes(bytes(a.public))
    assert pub == a.public and hash(pub) == hash(a.public)
    assert a.dh(b.public.x25519) == b.dh(a.public.x25519)
    sig = a.sign(b"msg")
    pub.verify(b"msg", sig)
    with pytest.raises(DecryptionError):
        pub.verify(b"msh", sig)
    with pytest.raises(DecryptionError):
        ed25519_verify(bytes(pub), b"msg", sig[:63])
    assert IdentityKeyPair(a.private_bytes()).public == a.public


def test_secrets_never_printed() -> None:
    rng = drbg(b"secret")
    ident = IdentityKeyPair.generate(rng)
    x = X25519KeyPair.generate(rng)
    kem = MLKEMKeyPair.generate(rng)
    pk = PreKeyPair.generate(ident, PreKeyKind.X25519_SIGNED, 1, rng)
    for obj, secret in (
        (ident, ident.private_bytes()),
        (x, x.private_bytes()),
        (kem, kem.private_bytes()),
        (pk, pk.keypair.private_bytes()),
    ):
        for text in (repr(obj), str(obj), f"{obj}", f"{obj!r}"):
            assert "[secret]" in text
            assert secret.hex()[:16] not in text
            assert repr(secret)[2:20] not in text
        with pytest.raises(TypeError):
            pickle.dumps(obj)


def test_mlkem_roundtrip_and_validation() -> None:
    kp = MLKEMKeyPair.generate(drbg(b"kem"))
    ss, ct = kp.public.encapsulate()
    assert kp.decapsulate(ct) == ss and len(ct) == 1088
    # Implicit rejection: a flipped ciphertext decapsulates to an unrelated secret.
    assert kp.decapsulate(bytes([ct[0] ^ 1]) + ct[1:]) != ss
    with pytest.raises(KeyValidationError):
        kp.decapsulate(ct[:-1])
    with pytest.raises(KeyValidationError):
        MLKEMPublicKey.from_bytes(bytes(kp.public)[:-1])
    with pytest.raises(KeyValidationError):  # coefficient 0xFFF >= q
        MLKEMPublicKey.from_bytes(b"\xff\xff\xff" + bytes(kp.public)[3:])
    assert MLKEMKeyPair(kp.private_bytes()).public == kp.public


@pytest.mark.parametrize("kind", list(PreKeyKind))
def test_prekey_records(kind: PreKeyKind) -> None:
    rng = drbg(bytes([kind]))
    ident = IdentityKeyPair.generate(rng)
    other = IdentityKeyPair.generate(rng)
    pk = PreKeyPair.generate(ident, kind, 4242, rng)
    raw = pk.public_record.to_bytes()
    parsed = SignedPreKey.parse(raw, ident.public)
    assert parsed.kind is kind and parsed.key_id == 4242 and parsed.public == pk.keypair.public
    with pytest.raises(KeyValidationError):
        SignedPreKey.parse(raw, other.public)
    for i in (0, 1, 3, len(raw) - 1):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        with pytest.raises(KeyValidationError):
            SignedPreKey.parse(bytes(bad), ident.public)
    restored = PreKeyPair.from_private_bytes(pk.private_bytes())
    assert restored.public_record.raw == raw


def test_aead_and_hkdf_basics() -> None:
    key, nonce = bytes(range(32)), bytes(24)
    ct = aead_encrypt(key, nonce, b"pt", b"ad")
    assert aead_decrypt(key, nonce, ct, b"ad") == b"pt"
    for bad in (ct[:-1], b"", bytes([ct[0] ^ 1]) + ct[1:]):
        with pytest.raises(DecryptionError):
            aead_decrypt(key, nonce, bad, b"ad")
    with pytest.raises(DecryptionError):
        aead_decrypt(key, nonce, ct, b"ae")
    with pytest.raises(ValueError):
        hkdf(b"x", salt=b"", info=b"", length=255 * 32 + 1)


@pytest.mark.parametrize("overhead", [0, 155, 1289])
def test_pad_lands_on_buckets(overhead: int) -> None:
    for bucket in ENVELOPE_BUCKETS:
        for n in (bucket - overhead - 5, bucket - overhead - 4, bucket - overhead - 3):
            if n < 0:
                continue
            if overhead + 4 + n > ENVELOPE_BUCKETS[-1]:
                with pytest.raises(LocalProtocolError):
                    pad(b"\x01" * n, overhead=overhead, buckets=ENVELOPE_BUCKETS)
                continue
            padded = pad(b"\x01" * n, overhead=overhead, buckets=ENVELOPE_BUCKETS)
            assert overhead + len(padded) in ENVELOPE_BUCKETS
            assert unpad(padded) == b"\x01" * n


def test_unpad_rejects_malformed() -> None:
    good = pad(b"abc", overhead=0, buckets=ENVELOPE_BUCKETS)
    for bad in (b"", b"\x00\x00\x01", good[:-1] + b"\x01", b"\x00\x00\x10\x00" + good[4:]):
        with pytest.raises(DecryptionError):
            unpad(bad)


def test_franking() -> None:
    fk = bytes(range(32))
    h = hashlib.sha256(b"attachment").digest()
    fc = franking_commit(
        fk, sender=b"S" * 32, recipient=b"R" * 32, message=b"m", attachment_hashes=[h]
    )
    franking_verify(
        fc, fk, sender=b"S" * 32, recipient=b"R" * 32, message=b"m", attachment_hashes=[h]
    )
    variants = [
        dict(sender=b"T" * 32, recipient=b"R" * 32, message=b"m", attachment_hashes=[h]),
        dict(sender=b"S" * 32, recipient=b"Q" * 32, message=b"m", attachment_hashes=[h]),
        dict(sender=b"S" * 32, recipient=b"R" * 32, message=b"n", attachment_hashes=[h]),
        dict(sender=b"S" * 32, recipient=b"R" * 32, message=b"m", attachment_hashes=[]),
        dict(sender=b"S" * 32, recipient=b"R" * 32, message=b"m", attachment_hashes=[bytes(32)]),
    ]
    for v in variants:
        with pytest.raises(DecryptionError):
            franking_verify(fc, fk, **v)  # type: ignore[arg-type]
    with pytest.raises(DecryptionError):
        franking_verify(
            fc,
            bytes(32),
            sender=b"S" * 32,
            recipient=b"R" * 32,
            message=b"m",
            attachment_hashes=[h],
        )


def test_safety_numbers_order_independent() -> None:
    a = IdentityKeyPair.generate(drbg(b"sa")).public
    b = IdentityKeyPair.generate(drbg(b"sb")).public
    c = IdentityKeyPair.generate(drbg(b"sc")).public
    sn = safety_number(a, b)
    assert sn == safety_number(b, a)
    assert len(sn.replace(" ", "")) == 60 and sn.replace(" ", "").isdigit()
    assert sn != safety_number(a, c)
    payload = qr_payload(a, b)
    assert payload == qr_payload(b, a) and len(payload) == 65
    verify_qr_payload(payload, b, a)
    with pytest.raises(SafetyNumberMismatch):
        verify_qr_payload(payload, a, c)
    with pytest.raises(SafetyNumberMismatch):
        verify_qr_payload(payload[:-1], a, b)
