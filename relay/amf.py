"""The moderator's side of asymmetric message franking (docs/amf.md).

A report may carry the sender's AMF signature ``sigma`` (448 bytes), which the recipient's
client found inside the end-to-end ciphertext. The relay, as the moderator ("judge"), holds
for each franking key id ``kid`` a key pair derived from the franking key ``K_kid`` it already
keeps (same rotation, retirement and destruction)::

    j = SHA-512("blindrelay/v1/amf-judge" || 0x00 || K_kid) mod L        M = j*B

and publishes ``M``. It accepts ``sigma`` when the Fiat-Shamir proof over the three clauses
verifies *and* ``J == j*E_J``: then ``J``'s discrete logarithm is unknown to everyone but the
relay, so clause A was proven with the sender's identity key, and no recipient can have made
it, whatever it deposited or registered.

This is an implementation of its own of the construction in docs/amf.md, on purpose: the
relay never imports client cryptography (``clientlib.crypto``); the conformance vectors
(``tests/vectors/amf-v1.json``) check both against each other. Scalar arithmetic is done
on Python integers here (the client uses libsodium's scalar functions): every scalar handled
that way is public (part of ``sigma`` or the challenge). The secret ``j`` is only reduced
and multiplied by libsodium (constant time); comparisons use ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Final, NamedTuple

import nacl.bindings as _b
import nacl.exceptions

__all__ = [
    "AMF_CONTEXT",
    "AMF_JUDGE_CONTEXT",
    "AMF_SIGNATURE_SIZE",
    "JudgeKey",
    "judge_key",
    "verify_as_judge",
]

#: Domain separation of the Fiat-Shamir challenge (written out again; see clientlib).
AMF_CONTEXT: Final = b"blindrelay/v1/amf" + b"\x00"
#: Domain separation of the moderator key derived from a franking key.
AMF_JUDGE_CONTEXT: Final = b"blindrelay/v1/amf-judge" + b"\x00"
AMF_SIGNATURE_SIZE: Final = 448

_L: Final = (1 << 252) + 27742317777372353535851937790883648493
_BASE: Final = _b.crypto_scalarmult_ed25519_base_noclamp((1).to_bytes(32, "little"))
_U32: Final = 0xFFFFFFFF

# Where each commitment's (c, z) pair and its (base, public) come from. Scalars are indexed
# in sigma's scalar list (c_A0, z_A0, c_A1, z_A1, c_B0, ...); points are named.
# Order of the seven commitments: A-left, A-right, B-left, B-right, C-left (B), C-left (M),
# C-right.
_COMMITMENTS: Final = (
    (0, 1, "B", "A_S"),
    (2, 3, "B", "J"),
    (4, 5, "B", "A_S"),
    (6, 7, "B", "A_R"),
    (8, 9, "B", "E_J"),
    (8, 9, "M", "J"),
    (10, 11, "B", "A_R"),
)
# (c_left index, c_right index) per clause.
_SPLITS: Final = ((0, 2), (4, 6), (8, 10))


class JudgeKey(NamedTuple):
    """The moderator key pair of one franking key: ``(j, M)``, 32 bytes each.

    ``j`` (``secret``) is a canonical scalar; ``M`` (``public``) is what the relay publishes
    next to ``kid``. ``repr`` never shows ``j``.
    """

    secret: bytes
    public: bytes

    def __repr__(self) -> str:
        return f"JudgeKey(public={self.public[:8].hex()}..., secret=[secret])"

    def __str__(self) -> str:
        return self.__repr__()


def judge_key(franking_key: bytes) -> JudgeKey:
    """``j = SHA-512(AMF_JUDGE_CONTEXT || K_kid) mod L``, ``M = j*B``.

    Raises:
        ValueError: ``franking_key`` is not 32 bytes.
    """
    if type(franking_key) is not bytes or len(franking_key) != 32:
        raise ValueError("a franking key is 32 bytes")
    # libsodium's reduction (constant time): j is secret.
    j = _b.crypto_core_ed25519_scalar_reduce(
        hashlib.sha512(AMF_JUDGE_CONTEXT + franking_key).digest()
    )
    return JudgeKey(j, _b.crypto_scalarmult_ed25519_base_noclamp(j))


def _valid_point(p: bytes) -> bool:
    return len(p) == 32 and bool(_b.crypto_core_ed25519_is_valid_point(p))


def _times(k: int, p: bytes) -> bytes:
    kb = k.to_bytes(32, "little")
    if p == _BASE:
        return _b.crypto_scalarmult_ed25519_base_noclamp(kb)
    return _b.crypto_scalarmult_ed25519_noclamp(kb, p)


def _check(
    judge: JudgeKey | bytes, snd: bytes, rcp: bytes, kid: int, fc: bytes, sig: bytes
) -> bool:
    if isinstance(judge, JudgeKey):
        j, m = judge.secret, judge.public
    else:
        j, m = judge, b""
    if type(j) is not bytes or len(j) != 32:
        return False
    if not m:
        m = _b.crypto_scalarmult_ed25519_base_noclamp(j)
    if type(kid) is not int or not 0 <= kid <= _U32 or type(fc) is not bytes or len(fc) != 32:
        return False
    if type(sig) is not bytes or len(sig) != AMF_SIGNATURE_SIZE:
        return False
    if not all(type(p) is bytes and _valid_point(p) for p in (snd, rcp, m)):
        return False
    e_j, big_j = sig[0:32], sig[32:64]
    if not (_valid_point(e_j) and _valid_point(big_j)):
        return False
    scalars = [int.from_bytes(sig[64 + 32 * i : 96 + 32 * i], "little") for i in range(12)]
    if not all(0 < s < _L for s in scalars):
        return False
    points = {"B": _BASE, "M": m, "A_S": snd, "A_R": rcp, "E_J": e_j, "J": big_j}
    transcript = [AMF_CONTEXT, struct.pack(">I", kid), snd, rcp, m, e_j, big_j, fc]
    for ci, zi, base, public in _COMMITMENTS:
        # T = z*base - c*public
        transcript.append(
            _b.crypto_core_ed25519_sub(
                _times(scalars[zi], points[base]), _times(scalars[ci], points[public])
            )
        )
    c = int.from_bytes(hashlib.sha512(b"".join(transcript)).digest(), "little") % _L
    proof = True
    for left, right in _SPLITS:
        total = ((scalars[left] + scalars[right]) % _L).to_bytes(32, "little")
        proof &= hmac.compare_digest(total, c.to_bytes(32, "little"))
    # The judge's own check: (E_J, J) is a Diffie-Hellman tuple for M.
    tuple_ok = hmac.compare_digest(_b.crypto_scalarmult_ed25519_noclamp(j, e_j), big_j)
    return proof and tuple_ok


def verify_as_judge(
    judge: JudgeKey | bytes,
    sender_pub: bytes,
    recipient_pub: bytes,
    kid: int,
    fc: bytes,
    sig: bytes,
) -> bool:
    """Whether ``sig`` is the sender's AMF signature over ``fc`` to ``recipient_pub``.

    Args:
        judge: the moderator key of ``kid`` (:func:`judge_key` of ``K_kid``) or its scalar
            ``j`` alone (then ``M = j*B`` is recomputed).
        sender_pub, recipient_pub: the Ed25519 identity keys named by the report.
        kid: the franking key id the sender signed under (u32).
        fc: the report's franking commitment (32 bytes).
        sig: the 448-byte ``sigma``.

    Returns:
        True only if every point is a valid prime-order point, every scalar canonical and
        non-zero, the proof verifies and ``J == j*E_J``; False for anything else (the relay
        answers ``FRANKING``). The caller checks ``kid``'s report window first (``EXPIRED``).
    """
    try:
        return _check(judge, sender_pub, recipient_pub, kid, fc, sig)
    except nacl.exceptions.CryptoError:
        return False
