"""Asymmetric message franking, the moderator's side (relay/amf.py, docs/amf.md): the judge
key derived from a franking key, and the judge's verification against signatures made by
the client's independent implementation (honest, tampered, forged by the recipient)."""

from __future__ import annotations

import ast
import hashlib
import struct
from pathlib import Path

import nacl.bindings as nb
import pytest

import relay.amf as relay_amf
from clientlib.crypto.amf import ED25519_ORDER, forge_as_recipient, frank
from clientlib.crypto.keys import IdentityKeyPair
from relay.amf import (
    AMF_CONTEXT,
    AMF_JUDGE_CONTEXT,
    AMF_SIGNATURE_SIZE,
    JudgeKey,
    judge_key,
    verify_as_judge,
)

L = ED25519_ORDER
ALICE = IdentityKeyPair(hashlib.sha256(b"relay alice").digest())
BOB = IdentityKeyPair(hashlib.sha256(b"relay bob").digest())
A, R = bytes(ALICE.public), bytes(BOB.public)
K1 = hashlib.sha256(b"franking key 1").digest()
K2 = hashlib.sha256(b"franking key 2").digest()
JUDGE = judge_key(K1)
FC = hashlib.sha256(b"relay fc").digest()


def counter_rng(seed: bytes):
    state = [0]

    def rng(n: int) -> bytes:
        state[0] += 1
        return hashlib.sha512(seed + struct.pack(">I", state[0])).digest()[:n]

    return rng


SIG = frank(ALICE, A, R, JUDGE.public, 1, FC, rng=counter_rng(b"relay sig"))


def test_labels() -> None:
    assert AMF_CONTEXT == b"blindrelay/v1/amf" + b"\x00"
    assert AMF_JUDGE_CONTEXT == b"blindrelay/v1/amf-judge" + b"\x00"
    assert AMF_SIGNATURE_SIZE == 448


def test_judge_key_derivation() -> None:
    j, m = judge_key(K1)
    expected = int.from_bytes(hashlib.sha512(AMF_JUDGE_CONTEXT + K1).digest(), "little") % L
    assert j == expected.to_bytes(32, "little")
    assert m == nb.crypto_scalarmult_ed25519_base_noclamp(j)
    assert nb.crypto_core_ed25519_is_valid_point(m)
    assert judge_key(K1) == (j, m)  # deterministic: the franking key's lifecycle is M's
    assert judge_key(K2).public != m
    assert j.hex() not in repr(JUDGE) and "[secret]" in repr(JUDGE) and "[secret]" in str(JUDGE)
    assert isinstance(JUDGE, JudgeKey)
    for bad in (b"", K1[:31], K1 + b"\x00"):
        with pytest.raises(ValueError, match="32 bytes"):
            judge_key(bad)


def test_honest_signature_is_accepted() -> None:
    assert verify_as_judge(JUDGE, A, R, 1, FC, SIG)
    assert verify_as_judge(JUDGE.secret, A, R, 1, FC, SIG)


def test_every_single_bit_flip_is_refused() -> None:
    for i in range(len(SIG) * 8):
        bad = bytearray(SIG)
        bad[i // 8] ^= 1 << (i % 8)
        assert not verify_as_judge(JUDGE, A, R, 1, FC, bytes(bad)), i


def test_wrong_report_fields_are_refused() -> None:
    assert not verify_as_judge(JUDGE, A, R, 2, FC, SIG)
    assert not verify_as_judge(judge_key(K2), A, R, 1, FC, SIG)  # another kid's key
    assert not verify_as_judge(JUDGE, R, A, 1, FC, SIG)
    assert not verify_as_judge(JUDGE, A, A, 1, FC, SIG)
    assert not verify_as_judge(JUDGE, A, R, 1, bytes(32), SIG)
    # A mismatched (j, M) pair is refused, not trusted.
    assert not verify_as_judge(JudgeKey(JUDGE.secret, judge_key(K2).public), A, R, 1, FC, SIG)


def test_recipient_forgery_is_refused() -> None:
    """The report of a message Bob invented, 'signed' with Bob's key only, whatever he
    deposits or registers: the proof is valid, the tuple check fails."""
    forged = forge_as_recipient(BOB, A, JUDGE.public, 1, FC, rng=counter_rng(b"forge"))
    assert not verify_as_judge(JUDGE, A, R, 1, FC, forged)
    # Forged for the relay's other key, it is refused there too.
    m2 = judge_key(K2)
    forged2 = forge_as_recipient(BOB, A, m2.public, 2, FC, rng=counter_rng(b"forge2"))
    assert not verify_as_judge(m2, A, R, 2, FC, forged2)


def test_malformed_inputs_are_refused_not_raised() -> None:
    small = bytes([1]) + bytes(31)
    cases = [
        (JUDGE, small, R, 1, FC, SIG),
        (JUDGE, A, small, 1, FC, SIG),
        (JUDGE, A[:31], R, 1, FC, SIG),
        (JUDGE, A, R, -1, FC, SIG),
        (JUDGE, A, R, 2**32, FC, SIG),
        (JUDGE, A, R, 1, FC[:31], SIG),
        (JUDGE, A, R, 1, FC, SIG[:-1]),
        (JUDGE, A, R, 1, FC, SIG + b"\x00"),
        (JUDGE, A, R, 1, FC, bytes(448)),
        (bytes(32), A, R, 1, FC, SIG),  # zero scalar: libsodium refuses, we answer False
        (b"short", A, R, 1, FC, SIG),
        (JudgeKey(JUDGE.secret, small), A, R, 1, FC, SIG),
    ]
    for case in cases:
        assert verify_as_judge(*case) is False  # type: ignore[arg-type]
    # A non-canonical scalar (z + L, same residue) is refused.
    z = int.from_bytes(SIG[64 + 32 : 96 + 32], "little")
    bad = SIG[: 64 + 32] + (z + L).to_bytes(32, "little") + SIG[96 + 32 :]
    assert not verify_as_judge(JUDGE, A, R, 1, FC, bad)


def test_relay_does_not_import_client_crypto() -> None:
    tree = ast.parse(Path(relay_amf.__file__).read_text(encoding="utf-8"))
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert not any(str(m).startswith("clientlib") for m in imported), imported
