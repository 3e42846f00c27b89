"""Asymmetric message franking, the client's side (clientlib/crypto/amf.py, docs/amf.md).

Every signature is checked by both the recipient's verification (this module) and the
moderator's (relay/amf.py, an independent implementation), with real libsodium group
operations and no mocks.
"""

from __future__ import annotations

import hashlib
import pickle

import nacl.bindings as nb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientlib.crypto.amf import (
    AMF_CONTEXT,
    AMF_SIGNATURE_SIZE,
    ED25519_BASE,
    ED25519_ORDER,
    PreparedFrank,
    forge_as_recipient,
    frank,
    prepare,
    signature_parts,
    verify_as_recipient,
)
from clientlib.crypto.keys import IdentityKeyPair
from clientlib.errors import DecryptionError, KeyValidationError, LocalProtocolError
from relay.amf import judge_key, verify_as_judge

L = ED25519_ORDER
P = 2**255 - 19
#: A point of order 8 (libsodium's small-order list).
ORDER8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
IDENTITY = bytes([1]) + bytes(31)


def drbg(seed: bytes):
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.sha256(b"amf-test" + seed + counter.to_bytes(8, "big")).digest()
            counter += 1
        return out[:n]

    return rng


def scalar(seed: bytes) -> bytes:
    return nb.crypto_core_ed25519_scalar_reduce(hashlib.sha512(seed).digest())


ALICE = IdentityKeyPair(hashlib.sha256(b"alice").digest())
BOB = IdentityKeyPair(hashlib.sha256(b"bob").digest())
CAROL = IdentityKeyPair(hashlib.sha256(b"carol").digest())
A, R, C = bytes(ALICE.public), bytes(BOB.public), bytes(CAROL.public)
JUDGE = judge_key(hashlib.sha256(b"franking key 7").digest())
OTHER_JUDGE = judge_key(hashlib.sha256(b"franking key 8").digest())
M = JUDGE.public
KID = 7
FC = hashlib.sha256(b"fc").digest()
SIG = frank(ALICE, ALICE.public, BOB.public, M, KID, FC, rng=drbg(b"sig"))


def recipient_ok(
    sig: bytes, *, snd: bytes = A, rcp: bytes = R, m: bytes = M, kid: int = KID, fc: bytes = FC
) -> bool:
    try:
        verify_as_recipient(snd, rcp, m, kid, fc, sig)
    except DecryptionError:
        return False
    return True


def judge_ok(sig: bytes, *, snd: bytes = A, rcp: bytes = R, kid: int = KID, fc: bytes = FC) -> bool:
    return verify_as_judge(JUDGE, snd, rcp, kid, fc, sig)


def test_honest_signature_verifies_on_both_sides() -> None:
    assert len(SIG) == AMF_SIGNATURE_SIZE == 448
    assert recipient_ok(SIG)
    assert judge_ok(SIG)
    assert verify_as_judge(JUDGE.secret, A, R, KID, FC, SIG)  # j alone, M recomputed
    # Public keys as objects or bytes, the identity as a key pair or its seed.
    sig = frank(ALICE.private_bytes(), A, R, M, KID, FC, rng=drbg(b"sig"))
    assert sig == SIG
    verify_as_recipient(ALICE.public, BOB.public, M, KID, FC, sig)


def test_layout() -> None:
    parts = signature_parts(SIG)
    assert parts is not None
    ej, jj, scalars = parts
    assert (ej, jj) == (SIG[:32], SIG[32:64])
    assert b"".join(scalars) == SIG[64:]
    # (E_J, J) is a Diffie-Hellman tuple for M: J = j*E_J.
    assert nb.crypto_scalarmult_ed25519_noclamp(JUDGE.secret, ej) == jj
    # Each clause's challenges add up to the same c.
    sums = {
        (int.from_bytes(scalars[i], "little") + int.from_bytes(scalars[i + 2], "little")) % L
        for i in (0, 4, 8)
    }
    assert len(sums) == 1
    assert AMF_CONTEXT == b"blindrelay/v1/amf\x00"


def test_deterministic_for_vectors_and_fresh_otherwise() -> None:
    assert frank(ALICE, A, R, M, KID, FC, rng=drbg(b"sig")) == SIG
    other = frank(ALICE, A, R, M, KID, FC, rng=drbg(b"other"))
    assert other != SIG
    assert recipient_ok(other) and judge_ok(other)


def test_hedged_against_a_stuck_rng() -> None:
    """With an rng stuck on zeros, two messages still get different nonces (fc is hashed in),
    so the identity key does not leak from two responses to one commitment."""

    def zeros(n: int) -> bytes:
        return bytes(n)

    fc2 = hashlib.sha256(b"fc2").digest()
    s1 = frank(ALICE, A, R, M, KID, FC, rng=zeros)
    s2 = frank(ALICE, A, R, M, KID, fc2, rng=zeros)
    assert s1[:64] != s2[:64]
    assert recipient_ok(s1) and recipient_ok(s2, fc=fc2)


def test_every_single_bit_flip_fails() -> None:
    for i in range(len(SIG) * 8):
        bad = bytearray(SIG)
        bad[i // 8] ^= 1 << (i % 8)
        assert not recipient_ok(bytes(bad)), i


def test_wrong_context_fails() -> None:
    assert not recipient_ok(SIG, kid=KID + 1)
    assert not recipient_ok(SIG, fc=hashlib.sha256(b"another fc").digest())
    assert not recipient_ok(SIG, snd=C)
    assert not recipient_ok(SIG, rcp=C)
    assert not recipient_ok(SIG, snd=R, rcp=A)
    assert not recipient_ok(SIG, m=OTHER_JUDGE.public)
    assert not judge_ok(SIG, kid=KID + 1)
    assert not judge_ok(SIG, fc=hashlib.sha256(b"another fc").digest())
    assert not judge_ok(SIG, snd=C)
    assert not judge_ok(SIG, rcp=C)
    assert not verify_as_judge(OTHER_JUDGE, A, R, KID, FC, SIG)


def test_recipient_forgery_passes_recipient_fails_judge() -> None:
    """Deniability: the recipient alone (its own identity key, public keys) makes a signature
    'from' Alice that its own check accepts, as anyone's would who holds r; the moderator
    rejects it, so it cannot be used to frame Alice."""
    forged = forge_as_recipient(BOB, A, M, KID, FC, rng=drbg(b"forge"))
    assert len(forged) == AMF_SIGNATURE_SIZE
    assert recipient_ok(forged)
    assert not judge_ok(forged)
    assert not verify_as_judge(JUDGE.secret, A, R, KID, FC, forged)
    # Nor does it pass for any other recipient (it was proven with Bob's key).
    assert not recipient_ok(forged, rcp=C)
    # A third party (Carol) cannot do it with her own key for Bob.
    by_carol = forge_as_recipient(CAROL, A, M, KID, FC, rng=drbg(b"carol"))
    assert not recipient_ok(by_carol)
    assert not judge_ok(by_carol)


def _custom(
    real: tuple[int, int, int],
    witnesses: tuple[bytes, bytes, bytes],
    ej: bytes,
    jj: bytes,
    m: bytes = M,
    seed: bytes = b"custom",
) -> bytes:
    """A proof built by hand with the client's prover, for cheating senders."""
    counter = [0]

    def draw() -> bytes:
        counter[0] += 1
        return scalar(seed + counter[0].to_bytes(4, "big"))

    return PreparedFrank(
        kid=KID,
        sender=A,
        recipient=R,
        moderator=m,
        ej=ej,
        jj=jj,
        real=real,
        witnesses=witnesses,
        draw=draw,
    ).sign(FC)


def _alice_scalar() -> bytes:
    h = bytearray(hashlib.sha512(ALICE.private_bytes()).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    s = nb.crypto_core_ed25519_scalar_reduce(bytes(h) + bytes(32))
    assert nb.crypto_scalarmult_ed25519_base_noclamp(s) == A
    return s


def test_sender_cannot_make_an_unreportable_message() -> None:
    """Finding 2: a sender proves clause A with a J whose logarithm it knows (so the moderator
    would reject), and must then fake clause C. Every way fails the recipient's check, so the
    client drops the message instead of showing something unreportable."""
    s = _alice_scalar()
    gamma, alpha = scalar(b"gamma"), scalar(b"alpha")
    jj = nb.crypto_scalarmult_ed25519_base_noclamp(gamma)
    ej = nb.crypto_scalarmult_ed25519_base_noclamp(alpha)
    # Sanity: the right shape with an honest tuple does verify (the harness is not broken).
    honest = _custom((0, 0, 0), (s, s, alpha), ej, nb.crypto_scalarmult_ed25519_noclamp(alpha, M))
    assert recipient_ok(honest) and judge_ok(honest)
    attempts = {
        # C "proven" with alpha although J != alpha*M.
        "C with a false tuple": _custom((1, 0, 0), (gamma, s, alpha), ej, jj),
        # C's right branch with Alice's key in place of Bob's.
        "C with the sender's key": _custom((1, 0, 1), (gamma, s, s), ej, jj),
        # B and C "with r" = s.
        "B and C with the sender's key": _custom((1, 1, 1), (gamma, s, s), ej, jj),
    }
    # Both branches of C simulated (challenges guessed): replace C's four scalars.
    base = attempts["C with a false tuple"]
    guessed = b"".join(scalar(b"guess" + bytes([i])) for i in range(4))
    attempts["C fully simulated"] = base[: 64 + 256] + guessed
    # An honest tuple for a moderator key the sender knows (not the recipient's relay's).
    mine = scalar(b"my own moderator")
    my_m = nb.crypto_scalarmult_ed25519_base_noclamp(mine)
    attempts["tuple for another moderator key"] = _custom(
        (0, 0, 0), (s, s, alpha), ej, nb.crypto_scalarmult_ed25519_noclamp(alpha, my_m), m=my_m
    )
    for name, sig in attempts.items():
        assert not recipient_ok(sig), name
        assert not judge_ok(sig), name


def _with(sig: bytes, offset: int, value: bytes) -> bytes:
    return sig[:offset] + value + sig[offset + 32 :]


def _noncanonical_points() -> list[bytes]:
    k = scalar(b"point")
    p = nb.crypto_scalarmult_ed25519_base_noclamp(k)
    return [
        IDENTITY,
        ORDER8,
        bytes(32),  # y = 0: the point (sqrt(-1), 0) of order 4
        nb.crypto_core_ed25519_add(p, ORDER8),  # on the curve, outside the prime-order subgroup
        (P + 1).to_bytes(32, "little"),  # y = 1 written as y + p (non-canonical identity)
        (2**255 - 1).to_bytes(32, "little"),  # y >= p
        bytes([1]) + bytes(30) + b"\x80",  # identity with the sign bit ("-0")
        p[:31],  # short
    ]


def test_bad_points_in_the_signature_are_rejected() -> None:
    for bad in _noncanonical_points():
        for off in (0, 32):
            sig = SIG[:off] + bad + SIG[off + 32 :] if len(bad) == 32 else SIG[:off] + bad
            assert signature_parts(sig) is None, (bad.hex(), off)
            assert not recipient_ok(sig)
            assert not judge_ok(sig)


def test_non_canonical_and_zero_scalars_are_rejected() -> None:
    for index in range(12):
        off = 64 + 32 * index
        z = int.from_bytes(SIG[off : off + 32], "little")
        # z + L names the same residue: without the canonical check it would verify.
        plus_l = (z + L).to_bytes(32, "little")
        for bad in (plus_l, bytes(32), L.to_bytes(32, "little"), b"\xff" * 32):
            sig = _with(SIG, off, bad)
            assert signature_parts(sig) is None, index
            assert not recipient_ok(sig), index
            assert not judge_ok(sig), index


def test_bad_public_keys_are_rejected() -> None:
    for bad in _noncanonical_points():
        if len(bad) == 32 and nb.crypto_core_ed25519_is_valid_point(bad):
            continue
        assert not recipient_ok(SIG, snd=bad)
        assert not recipient_ok(SIG, rcp=bad)
        assert not recipient_ok(SIG, m=bad)
        assert not judge_ok(SIG, snd=bad)
        assert not judge_ok(SIG, rcp=bad)
        with pytest.raises(KeyValidationError):
            frank(ALICE, A, bad, M, KID, FC, rng=drbg(b"x"))
        with pytest.raises(KeyValidationError):
            frank(ALICE, A, R, bad, KID, FC, rng=drbg(b"x"))


def test_bad_arguments() -> None:
    for kid in (-1, 2**32, True):
        assert not recipient_ok(SIG, kid=kid)
        assert not judge_ok(SIG, kid=kid)
        with pytest.raises(ValueError, match="kid"):
            frank(ALICE, A, R, M, kid, FC, rng=drbg(b"x"))
    for fc in (FC[:31], FC + b"\x00", b""):
        assert not recipient_ok(SIG, fc=fc)
        assert not judge_ok(SIG, fc=fc)
        with pytest.raises(ValueError, match="fc"):
            frank(ALICE, A, R, M, KID, fc, rng=drbg(b"x"))
    for sig in (SIG[:-1], SIG + b"\x00", b"", bytes(448)):
        assert not recipient_ok(sig)
        assert not judge_ok(sig)
    with pytest.raises(ValueError, match="does not match"):
        frank(ALICE, C, R, M, KID, FC, rng=drbg(b"x"))
    with pytest.raises(ValueError, match="seed"):
        frank(b"short", A, R, M, KID, FC, rng=drbg(b"x"))
    with pytest.raises(ValueError, match="rng"):
        frank(ALICE, A, R, M, KID, FC, rng=lambda n: bytes(n - 1))


def test_prepared_signature() -> None:
    prepared = prepare(ALICE, A, R, M, KID, rng=drbg(b"prep"))
    assert "[secret]" in repr(prepared) and "[secret]" in str(prepared)
    with pytest.raises(TypeError):
        pickle.dumps(prepared)
    sig = prepared.sign(FC)
    assert recipient_ok(sig) and judge_ok(sig)
    # Single use: a second challenge over the same commitments would reveal the key.
    with pytest.raises(LocalProtocolError):
        prepared.sign(hashlib.sha256(b"second").digest())
    # A bad fc does not consume it.
    again = prepare(ALICE, A, R, M, KID, rng=drbg(b"prep2"))
    with pytest.raises(ValueError, match="fc"):
        again.sign(b"short")
    assert recipient_ok(again.sign(FC))


def test_signature_is_not_transferable_as_a_plain_signature() -> None:
    """The proof names the recipient: a third party sees a statement 'Alice or Bob', and Bob
    can produce one on his own (test above); the base point never appears as a key."""
    assert nb.crypto_scalarmult_ed25519_base_noclamp((1).to_bytes(32, "little")) == ED25519_BASE
    forged = forge_as_recipient(BOB, A, M, KID, FC, rng=drbg(b"forge"))
    parts_real, parts_forged = signature_parts(SIG), signature_parts(forged)
    assert parts_real is not None and parts_forged is not None
    # Both are well-formed proofs of the same statement; only j tells them apart.
    assert nb.crypto_scalarmult_ed25519_noclamp(JUDGE.secret, parts_real[0]) == parts_real[1]
    assert nb.crypto_scalarmult_ed25519_noclamp(JUDGE.secret, parts_forged[0]) != parts_forged[1]


@settings(max_examples=15, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
)
def test_any_honest_signature_verifies_and_binds_its_inputs(
    seed_s: bytes, seed_r: bytes, franking_key: bytes, kid: int, fc: bytes, rnd: bytes
) -> None:
    sender, recipient = IdentityKeyPair(seed_s), IdentityKeyPair(seed_r)
    if sender.public == recipient.public:
        return
    judge = judge_key(franking_key)
    snd, rcp = bytes(sender.public), bytes(recipient.public)
    sig = frank(sender, snd, rcp, judge.public, kid, fc, rng=lambda n: rnd[:n])
    verify_as_recipient(snd, rcp, judge.public, kid, fc, sig)
    assert verify_as_judge(judge, snd, rcp, kid, fc, sig)
    assert not verify_as_judge(judge, snd, rcp, kid ^ 1, fc, sig)
    forged = forge_as_recipient(recipient, snd, judge.public, kid, fc, rng=lambda n: rnd[:n])
    verify_as_recipient(snd, rcp, judge.public, kid, fc, forged)
    assert not verify_as_judge(judge, snd, rcp, kid, fc, forged)
