"""Asymmetric message franking: the sender's designated-verifier signature (docs/amf.md).

The franking commitment ``fc`` (§15.1) and the relay tag ``ft`` (Part I §4.11) bind a
message's content and its delivery to a mailbox, but not its *sender*: a recipient can commit
to an invented message naming any identity and deposit it into its own mailbox. The AMF
signature ``sigma`` closes that gap. It is a Fiat-Shamir signature of knowledge, in the style
of Tyagi, Grubbs, Len, Miers and Ristenpart (CRYPTO 2019), over the Ed25519 prime-order
group, of three OR-clauses::

    A (judge binding):     know s: A_S = s*B            OR  know g: J = g*B
    B (recipient binding): know s: A_S = s*B            OR  know r: A_R = r*B
    C (tuple validity):    know a: E_J = a*B, J = a*M   OR  know r: A_R = r*B

where ``A_S``/``A_R`` are the sender's and recipient's identity keys, ``M`` the moderator
(the recipient's relay) key of franking key id ``kid``, and ``E_J = a*B``, ``J = a*M`` are
fresh per message. The honest sender proves the left branches (``s`` and ``a``) and simulates
the right ones (Cramer-Damgard-Schoenmakers OR composition). ``sigma`` travels inside the
end-to-end ciphertext, so the relay learns nothing at deposit.

* The recipient checks the proof (:func:`verify_as_recipient`): it did not use ``r``, so the
  sender knew ``s`` (B), and ``(E_J, J)`` is a Diffie-Hellman tuple for ``M`` (C), so the
  moderator will accept a report of it.
* The moderator checks the proof and ``J == j*E_J`` (``relay.amf.verify_as_judge``, an
  independent implementation): then nobody without ``s`` made it, the recipient included.
* Nobody else can tell: the holder of ``r`` makes proofs that only the moderator can tell
  from real ones (:func:`forge_as_recipient`).

Byte layout of ``sigma`` (448 bytes)::

    E_J(32) || J(32)
      || for clause in (A, B, C): c_left(32) || z_left(32) || c_right(32) || z_right(32)

Scalars are canonical little-endian integers in ``1 .. L-1``; points canonical encodings of
prime-order points other than the identity (``crypto_core_ed25519_is_valid_point``).

Randomness is injected (``rng``) and hedged: every per-signature scalar is derived from
``SHA-512`` over the signer's secret scalar, 32 ``rng`` bytes and the public inputs, so a
failing ``rng`` does not leak the identity key (it makes signatures of one message
deterministic, like RFC 8032).
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Final, final

import nacl.bindings as _b
import nacl.exceptions

from clientlib.crypto.keys import RNG, IdentityKeyPair, IdentityPublicKey
from clientlib.crypto.primitives import ct_eq
from clientlib.errors import DecryptionError, KeyValidationError, LocalProtocolError

__all__ = [
    "AMF_CONTEXT",
    "AMF_JUDGE_CONTEXT",
    "AMF_NONCE_CONTEXT",
    "AMF_SIGNATURE_SIZE",
    "ED25519_BASE",
    "ED25519_ORDER",
    "PreparedFrank",
    "forge_as_recipient",
    "frank",
    "prepare",
    "signature_parts",
    "verify_as_recipient",
]

#: Domain separation of the Fiat-Shamir challenge (17 ASCII bytes and a zero byte).
AMF_CONTEXT: Final = b"blindrelay/v1/amf\x00"
#: Domain separation of the moderator key derived from a franking key (relay side).
AMF_JUDGE_CONTEXT: Final = b"blindrelay/v1/amf-judge\x00"
#: Domain separation of the signer's hedged scalar derivation (local; verifiers never see it).
AMF_NONCE_CONTEXT: Final = b"blindrelay/v1/amf-nonce\x00"
#: ``E_J || J`` and three clauses of ``(c_left, z_left, c_right, z_right)``.
AMF_SIGNATURE_SIZE: Final = 64 + 3 * 128
#: The order ``L`` of the Ed25519 prime-order group.
ED25519_ORDER: Final = 2**252 + 27742317777372353535851937790883648493
#: The encoding of the Ed25519 base point ``B`` (y = 4/5).
ED25519_BASE: Final = bytes.fromhex("58" + "66" * 31)

_FC_SIZE: Final = 32
_MAX_KID: Final = 2**32 - 1
_ZERO32: Final = bytes(32)

Identity = IdentityKeyPair | bytes
Public = IdentityPublicKey | bytes
#: One side of a clause: pairs ``(base, public)`` that share one witness.
_Branch = tuple[tuple[bytes, bytes], ...]
_Clause = tuple[_Branch, _Branch]


class _DegenerateResponse(ValueError):
    """A response or split challenge came out zero (probability ``2^-251``)."""


# --- scalars and points ------------------------------------------------------------------


def _h2s(data: bytes) -> bytes:
    """``H2S(x) = SHA-512(x) mod L`` as 32 canonical bytes."""
    return _b.crypto_core_ed25519_scalar_reduce(hashlib.sha512(data).digest())


def _canonical_scalar(data: bytes) -> bool:
    """32 bytes, little-endian, in ``1 .. L-1``."""
    return len(data) == 32 and 0 < int.from_bytes(data, "little") < ED25519_ORDER


def _mul(k: bytes, point: bytes) -> bytes:
    """``k * point`` for a validated prime-order point (libsodium refuses the identity)."""
    if point == ED25519_BASE:
        return _b.crypto_scalarmult_ed25519_base_noclamp(k)
    return _b.crypto_scalarmult_ed25519_noclamp(k, point)


def _simulated(z: bytes, c: bytes, base: bytes, public: bytes) -> bytes:
    """``T = z*base - c*public``: a Schnorr commitment recomputed from ``(c, z)``."""
    return _b.crypto_core_ed25519_sub(_mul(z, base), _mul(c, public))


def _point(data: bytes) -> bytes:
    """A received point: 32 bytes, canonical, on the curve, prime order, not the identity.

    Raises:
        KeyValidationError: the point is rejected.
    """
    if (
        type(data) is not bytes
        or len(data) != 32
        or not _b.crypto_core_ed25519_is_valid_point(data)
    ):
        raise KeyValidationError("not a valid Ed25519 prime-order point")
    return data


def _public(key: Public) -> bytes:
    return bytes(key) if isinstance(key, IdentityPublicKey) else _point(key)


def _secret_scalar(identity: Identity) -> bytes:
    """The identity's secret scalar: clamped ``SHA-512(seed)[0:32]`` reduced mod ``L``."""
    seed = identity.private_bytes() if isinstance(identity, IdentityKeyPair) else identity
    if type(seed) is not bytes or len(seed) != 32:
        raise ValueError("an identity seed is 32 bytes")
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return _b.crypto_core_ed25519_scalar_reduce(bytes(h) + _ZERO32)


def _check_kid_fc(kid: int, fc: bytes) -> None:
    if type(kid) is not int or not 0 <= kid <= _MAX_KID:
        raise ValueError("kid is a u32")
    if type(fc) is not bytes or len(fc) != _FC_SIZE:
        raise ValueError("fc is 32 bytes")


# --- the statement -----------------------------------------------------------------------


def _clauses(
    sender: bytes, recipient: bytes, moderator: bytes, ej: bytes, jj: bytes
) -> list[_Clause]:
    """Clauses A, B, C, each ``(left, right)``; the commitments follow this order."""
    b = ED25519_BASE
    return [
        (((b, sender),), ((b, jj),)),
        (((b, sender),), ((b, recipient),)),
        (((b, ej), (moderator, jj)), ((b, recipient),)),
    ]


def _challenge(
    kid: int,
    sender: bytes,
    recipient: bytes,
    moderator: bytes,
    ej: bytes,
    jj: bytes,
    fc: bytes,
    commitments: Sequence[bytes],
) -> bytes:
    """``c = H2S(AMF_CONTEXT || u32be(kid) || A_S || A_R || M || E_J || J || fc || T_1..T_7)``."""
    return _h2s(
        b"".join(
            (
                AMF_CONTEXT,
                struct.pack(">I", kid),
                sender,
                recipient,
                moderator,
                ej,
                jj,
                fc,
                *commitments,
            )
        )
    )


def signature_parts(sig: bytes) -> tuple[bytes, bytes, list[bytes]] | None:
    """Split ``sigma`` into ``(E_J, J, [c_A0, z_A0, c_A1, z_A1, c_B0, ..., z_C1])``.

    None unless ``sig`` is 448 bytes, both points are valid prime-order points and all
    twelve scalars are canonical and non-zero.
    """
    if type(sig) is not bytes or len(sig) != AMF_SIGNATURE_SIZE:
        return None
    ej, jj = sig[:32], sig[32:64]
    scalars = [sig[i : i + 32] for i in range(64, AMF_SIGNATURE_SIZE, 32)]
    if not all(_b.crypto_core_ed25519_is_valid_point(p) for p in (ej, jj)):
        return None
    if not all(_canonical_scalar(s) for s in scalars):
        return None
    return ej, jj, scalars


# --- proving -----------------------------------------------------------------------------


class _Scalars:
    """Hedged per-signature scalars: ``H2S(seed || u8(i))`` for ``i = 0, 1, ...`` with
    ``seed = SHA-512(AMF_NONCE_CONTEXT || w || rng(32) || u32be(kid) || A_S || A_R || M ||
    bind)`` (``w`` the signer's secret scalar, ``bind`` ``fc`` or 32 zero bytes)."""

    __slots__ = ("_i", "_seed")

    def __init__(self, witness: bytes, rng: RNG, public: bytes, bind: bytes) -> None:
        rnd = rng(32)
        if type(rnd) is not bytes or len(rnd) != 32:
            raise ValueError("rng returned the wrong number of bytes")
        self._seed = hashlib.sha512(AMF_NONCE_CONTEXT + witness + rnd + public + bind).digest()
        self._i = 0

    def __call__(self) -> bytes:
        while True:  # a zero scalar has probability 2^-252; skip it rather than fail
            out = _h2s(self._seed + bytes((self._i,)))
            self._i += 1
            if out != _ZERO32:
                return out

    def __repr__(self) -> str:
        return "<_Scalars [secret]>"


@final
class PreparedFrank:
    """Everything of one signature that does not depend on the message: the per-message
    scalars, ``E_J``, ``J`` and the seven commitments. :meth:`sign` finishes it for one
    ``fc`` (one hash and three multiply-adds).

    Build it with :func:`prepare`. The constructor is the generic prover of the statement
    (``real`` names the proven branch of clauses A, B, C: 0 left, 1 right; ``witnesses``
    their witnesses; ``draw`` the hedged scalars): :func:`forge_as_recipient` and the tests
    use it, and it proves nothing true unless its arguments are.

    Warning:
        Single use: a second :meth:`sign` raises (its secrets are erased by the first),
        since two challenges over the same commitments reveal the identity key. Never
        copied, printed or pickled. Safe to share between threads.
    """

    __slots__ = (
        "_clauses",
        "_commitments",
        "_ej",
        "_jj",
        "_kid",
        "_lock",
        "_moderator",
        "_nonces",
        "_real",
        "_recipient",
        "_sender",
        "_sims",
        "_used",
        "_witnesses",
    )

    def __init__(
        self,
        *,
        kid: int,
        sender: bytes,
        recipient: bytes,
        moderator: bytes,
        ej: bytes,
        jj: bytes,
        real: tuple[int, int, int],
        witnesses: tuple[bytes, bytes, bytes],
        draw: Callable[[], bytes],
    ) -> None:
        self._kid, self._sender, self._recipient, self._moderator = (
            kid,
            sender,
            recipient,
            moderator,
        )
        self._ej, self._jj = ej, jj
        self._clauses = _clauses(sender, recipient, moderator, ej, jj)
        self._real, self._witnesses = real, witnesses
        self._nonces: list[bytes] = []
        self._sims: list[tuple[bytes, bytes]] = []
        self._commitments: list[bytes] = []
        self._used = False
        self._lock = threading.Lock()
        for clause, side in zip(self._clauses, real, strict=True):
            k, c_sim, z_sim = draw(), draw(), draw()
            self._nonces.append(k)
            self._sims.append((c_sim, z_sim))
            for s in (0, 1):
                for base, pub in clause[s]:
                    t = _mul(k, base) if s == side else _simulated(z_sim, c_sim, base, pub)
                    self._commitments.append(t)

    def binds(self, sender: Public, recipient: Public, moderator: bytes, kid: int) -> bool:
        """Whether this signature was prepared for exactly these public inputs (it is
        useless for any other recipient or moderator key: protocol.md §15.5.5)."""
        return (
            kid == self._kid
            and bytes(sender) == self._sender
            and bytes(recipient) == self._recipient
            and moderator == self._moderator
        )

    @property
    def used(self) -> bool:
        """True once :meth:`sign` ran (a prepared signature signs once)."""
        return self._used

    def sign(self, fc: bytes) -> bytes:
        """The 448-byte ``sigma`` over ``fc``.

        Raises:
            LocalProtocolError: this object has signed already.
            ValueError: ``fc`` is not 32 bytes, or a response came out zero (probability
                ``2^-251``; prepare again).
        """
        _check_kid_fc(self._kid, fc)
        with self._lock:
            if self._used:
                raise LocalProtocolError("a prepared frank signs once")
            self._used = True
            nonces, witnesses = self._nonces, self._witnesses
            self._nonces, self._witnesses = [], (b"", b"", b"")
        c = _challenge(
            self._kid,
            self._sender,
            self._recipient,
            self._moderator,
            self._ej,
            self._jj,
            fc,
            self._commitments,
        )
        out = [self._ej, self._jj]
        for side, k, w, (c_sim, z_sim) in zip(
            self._real, nonces, witnesses, self._sims, strict=True
        ):
            c_real = _b.crypto_core_ed25519_scalar_sub(c, c_sim)
            z_real = _b.crypto_core_ed25519_scalar_add(
                k, _b.crypto_core_ed25519_scalar_mul(c_real, w)
            )
            if _ZERO32 in (c_real, z_real):
                raise _DegenerateResponse("degenerate response; prepare again")
            pairs = (
                [(c_real, z_real), (c_sim, z_sim)]
                if side == 0
                else [(c_sim, z_sim), (c_real, z_real)]
            )
            out.extend(x for pair in pairs for x in pair)
        return b"".join(out)

    def __repr__(self) -> str:
        return "<PreparedFrank [secret]>"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("PreparedFrank cannot be pickled")


def _public_inputs(kid: int, sender: bytes, recipient: bytes, moderator: bytes) -> bytes:
    return struct.pack(">I", kid) + sender + recipient + moderator


def _prepare(
    identity: Identity,
    sender_pub: Public,
    recipient_pub: Public,
    moderator_pub: bytes,
    kid: int,
    bind: bytes,
    rng: RNG,
) -> PreparedFrank:
    _check_kid_fc(kid, bind)
    sender, recipient, moderator = (
        _public(sender_pub),
        _public(recipient_pub),
        _point(moderator_pub),
    )
    s = _secret_scalar(identity)
    if not ct_eq(_b.crypto_scalarmult_ed25519_base_noclamp(s), sender):
        raise ValueError("the identity does not match sender_pub")
    draw = _Scalars(s, rng, _public_inputs(kid, sender, recipient, moderator), bind)
    alpha = draw()
    return PreparedFrank(
        kid=kid,
        sender=sender,
        recipient=recipient,
        moderator=moderator,
        ej=_mul(alpha, ED25519_BASE),
        jj=_mul(alpha, moderator),
        real=(0, 0, 0),
        witnesses=(s, s, alpha),
        draw=draw,
    )


def prepare(
    identity: Identity,
    sender_pub: Public,
    recipient_pub: Public,
    moderator_pub: bytes,
    kid: int,
    *,
    rng: RNG,
) -> PreparedFrank:
    """Precompute one signature from ``identity`` to ``recipient_pub`` under the moderator
    key ``moderator_pub`` of ``kid`` (before the message exists); finish with
    :meth:`PreparedFrank.sign`.

    The hedge of a prepared signature cannot include ``fc``: it relies on ``rng`` (and on
    the object being used once).

    Raises:
        KeyValidationError: a public key is not a valid prime-order point.
        ValueError: ``kid`` is not a u32, ``identity`` is not a 32-byte seed or identity, or
            it does not match ``sender_pub``.
    """
    return _prepare(identity, sender_pub, recipient_pub, moderator_pub, kid, _ZERO32, rng)


def frank(
    identity: Identity,
    sender_pub: Public,
    recipient_pub: Public,
    moderator_pub: bytes,
    kid: int,
    fc: bytes,
    *,
    rng: RNG,
) -> bytes:
    """The sender's 448-byte AMF signature ``sigma`` over the franking commitment ``fc``.

    Args:
        identity: the sender's identity key pair (or its 32-byte seed).
        sender_pub: the sender's identity public key (must match ``identity``).
        recipient_pub: the recipient's identity public key.
        moderator_pub: ``M_kid``, the moderator key the recipient's relay publishes.
        kid: the relay's franking key id of ``M_kid`` (u32).
        fc: the 32-byte franking commitment of the message (§15.1).
        rng: injected randomness (32 bytes are drawn per attempt).

    Raises:
        KeyValidationError: a public key is not a valid prime-order point.
        ValueError: bad ``kid``/``fc``, or ``identity`` does not match ``sender_pub``.
    """
    _check_kid_fc(kid, fc)
    while True:
        try:
            return _prepare(identity, sender_pub, recipient_pub, moderator_pub, kid, fc, rng).sign(
                fc
            )
        except _DegenerateResponse:  # pragma: no cover - probability 2^-251
            continue


def forge_as_recipient(
    identity: Identity,
    sender_pub: Public,
    moderator_pub: bytes,
    kid: int,
    fc: bytes,
    *,
    rng: RNG,
) -> bytes:
    """A signature "from" ``sender_pub`` that the *recipient* makes with its own key alone.

    This is the deniability forgery: ``(E_J, J)`` random, clause A proven with ``log J``,
    clauses B and C with the recipient's ``r``. It passes :func:`verify_as_recipient` (a
    recipient knows it made it) and fails the moderator's check, and without the moderator's
    secret nobody can tell it from a genuine signature. Used by tests and vectors.

    Raises:
        KeyValidationError: a public key is not a valid prime-order point.
        ValueError: bad ``kid``/``fc`` or identity.
    """
    _check_kid_fc(kid, fc)
    sender, moderator = _public(sender_pub), _point(moderator_pub)
    r = _secret_scalar(identity)
    recipient = _b.crypto_scalarmult_ed25519_base_noclamp(r)
    draw = _Scalars(r, rng, _public_inputs(kid, sender, recipient, moderator), fc)
    e, gamma = draw(), draw()
    return PreparedFrank(
        kid=kid,
        sender=sender,
        recipient=recipient,
        moderator=moderator,
        ej=_mul(e, ED25519_BASE),
        jj=_mul(gamma, ED25519_BASE),
        real=(1, 1, 1),
        witnesses=(gamma, r, r),
        draw=draw,
    ).sign(fc)


# --- verifying ---------------------------------------------------------------------------


def _proof_valid(
    sender: bytes, recipient: bytes, moderator: bytes, kid: int, fc: bytes, sig: bytes
) -> bool:
    parts = signature_parts(sig)
    if parts is None:
        return False
    ej, jj, scalars = parts
    commitments: list[bytes] = []
    splits: list[tuple[bytes, bytes]] = []
    for i, clause in enumerate(_clauses(sender, recipient, moderator, ej, jj)):
        c0, z0, c1, z1 = scalars[4 * i : 4 * i + 4]
        splits.append((c0, c1))
        for (c, z), branch in zip(((c0, z0), (c1, z1)), clause, strict=True):
            commitments.extend(_simulated(z, c, base, pub) for base, pub in branch)
    c = _challenge(kid, sender, recipient, moderator, ej, jj, fc, commitments)
    ok = True
    for c0, c1 in splits:
        ok &= ct_eq(_b.crypto_core_ed25519_scalar_add(c0, c1), c)
    return ok


def verify_as_recipient(
    sender_pub: Public,
    recipient_pub: Public,
    moderator_pub: bytes,
    kid: int,
    fc: bytes,
    sig: bytes,
) -> None:
    """Check ``sigma`` on receipt, before the message is shown.

    A valid proof means, to the recipient (which did not use its own key): the sender's
    identity key made it (clause B), and ``(E_J, J)`` is a Diffie-Hellman tuple for the
    moderator key (clause C), so a report of the message will verify at the moderator.

    Raises:
        DecryptionError: anything fails (malformed key, kid, fc or signature, or a proof
            that does not verify); the message must be dropped like a bad ``fc``.
    """
    try:
        sender, recipient, moderator = (
            _public(sender_pub),
            _public(recipient_pub),
            _point(moderator_pub),
        )
        _check_kid_fc(kid, fc)
        ok = _proof_valid(sender, recipient, moderator, kid, fc, sig)
    except (KeyValidationError, ValueError, TypeError, nacl.exceptions.CryptoError):
        raise DecryptionError from None
    if not ok:
        raise DecryptionError
