"""Thin, typed wrappers over the primitives of protocol.md §10.2 (the project's "hazmat").

Everything classical comes from PyNaCl (libsodium): X25519, Ed25519, XChaCha20-Poly1305 (IETF).
Hashes, HMAC and HKDF come from the standard library (``hashlib``/``hmac``); HKDF is RFC 5869
written out here so that its exact input order is visible and checked against RFC 5869's
vectors and against ``cryptography``'s HKDF in the conformance tests.

Rules of this module:

* no randomness, no clock, no I/O: callers pass every key and nonce in;
* every authentication failure raises :class:`~clientlib.errors.DecryptionError` (one fixed
  message, no detail); every malformed *public* input raises
  :class:`~clientlib.errors.KeyValidationError`;
* comparisons of secret-dependent values use :func:`ct_eq` (``hmac.compare_digest``).

Warning:
    These functions are building blocks. Using them outside the constructions of protocol.md
    (for example reusing a key and nonce pair with :func:`aead_encrypt`) is insecure.
"""

from __future__ import annotations

import hashlib
import hmac

import nacl.bindings as _b
import nacl.exceptions

from clientlib.errors import DecryptionError, KeyValidationError

__all__ = [
    "AEAD_KEY_SIZE",
    "AEAD_NONCE_SIZE",
    "AEAD_TAG_SIZE",
    "ED25519_PUBLIC_KEY_SIZE",
    "ED25519_SEED_SIZE",
    "ED25519_SIGNATURE_SIZE",
    "HASH_SIZE",
    "X25519_KEY_SIZE",
    "aead_decrypt",
    "aead_encrypt",
    "ct_eq",
    "ed25519_expand_seed",
    "ed25519_public_from_seed",
    "ed25519_public_to_x25519",
    "ed25519_seed_to_x25519",
    "ed25519_sign",
    "ed25519_verify",
    "hkdf",
    "hkdf_expand",
    "hkdf_extract",
    "hmac_sha256",
    "sha256",
    "sha512",
    "validate_ed25519_public",
    "validate_x25519_public",
    "x25519",
    "x25519_public_from_private",
]

X25519_KEY_SIZE = 32
ED25519_SEED_SIZE = 32
ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
AEAD_KEY_SIZE = _b.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
AEAD_NONCE_SIZE = _b.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
AEAD_TAG_SIZE = _b.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16
HASH_SIZE = 32

_P25519 = 2**255 - 19
#: u-coordinates of the points of small order on Curve25519 and its twist (RFC 7748 §6.1
#: security considerations; the same list libsodium's ``has_small_order`` uses). A DH with
#: any of them yields a result independent of our secret.
_SMALL_ORDER_U = frozenset(
    {
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P25519 - 1,
    }
)
_ZERO32 = bytes(32)


def ct_eq(a: bytes, b: bytes) -> bool:
    """Compare two byte strings in time independent of their contents."""
    return hmac.compare_digest(a, b)


# --- hashes and KDFs ---------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    """SHA-256 (FIPS 180-4)."""
    return hashlib.sha256(data).digest()


def sha512(data: bytes) -> bytes:
    """SHA-512 (FIPS 180-4)."""
    return hashlib.sha512(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104)."""
    return hmac.digest(key, data, "sha256")


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with SHA-256 (RFC 5869 §2.2); an empty salt means 32 zero bytes."""
    return hmac.digest(salt if salt else _ZERO32, ikm, "sha256")


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand with SHA-256 (RFC 5869 §2.3).

    Raises:
        ValueError: ``length`` is not in ``1..255*32``.
    """
    if not 0 < length <= 255 * HASH_SIZE:
        raise ValueError("HKDF output length out of range")
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), "sha256")
        out += block
        counter += 1
    return out[:length]


def hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): ``Expand(Extract(salt, ikm), info, length)``.

    Raises:
        ValueError: ``length`` is out of range.
    """
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


# --- X25519 ------------------------------------------------------------------------------


def validate_x25519_public(public: bytes) -> bytes:
    """Check a received X25519 public key and return it.

    Rejected: any length but 32, a set top bit, a non-canonical u (``u >= p``) and the
    small-order points. Our own encoders never produce the first two, so a peer that sends
    them is not following protocol.md §10.3.

    Raises:
        KeyValidationError: the key is rejected.
    """
    if type(public) is not bytes or len(public) != X25519_KEY_SIZE:
        raise KeyValidationError("X25519 public key must be 32 bytes")
    u = int.from_bytes(public, "little")
    if u >= _P25519:
        raise KeyValidationError("X25519 public key is not canonical")
    if u in _SMALL_ORDER_U:
        raise KeyValidationError("X25519 public key has small order")
    return public


def x25519_public_from_private(private: bytes) -> bytes:
    """Return ``X25519(private, 9)`` (RFC 7748 §6.1); the scalar is clamped by libsodium."""
    return _b.crypto_scalarmult_base(private)


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519 Diffie-Hellman (RFC 7748 §6.1) on an already validated public key.

    Raises:
        KeyValidationError: the shared secret is all zero (a small-order input slipped past
            validation); libsodium refuses it as well.
    """
    try:
        shared = _b.crypto_scalarmult(private, public)
    except nacl.exceptions.RuntimeError:
        raise KeyValidationError("X25519 produced the all-zero shared secret") from None
    if ct_eq(shared, _ZERO32):  # pragma: no cover - libsodium already refuses it
        raise KeyValidationError("X25519 produced the all-zero shared secret")
    return shared


# --- Ed25519 -----------------------------------------------------------------------------


def validate_ed25519_public(public: bytes) -> bytes:
    """Check a received Ed25519 public key and return it.

    ``crypto_core_ed25519_is_valid_point`` rejects non-canonical encodings, points not on the
    curve, small-order points and points outside the prime-order subgroup.

    Raises:
        KeyValidationError: the key is rejected.
    """
    if type(public) is not bytes or len(public) != ED25519_PUBLIC_KEY_SIZE:
        raise KeyValidationError("Ed25519 public key must be 32 bytes")
    if not _b.crypto_core_ed25519_is_valid_point(public):
        raise KeyValidationError("Ed25519 public key is not a valid prime-order point")
    return public


def ed25519_public_from_seed(seed: bytes) -> bytes:
    """The Ed25519 public key of a 32-byte seed (RFC 8032 §5.1.5)."""
    pk, _sk = _b.crypto_sign_seed_keypair(seed)
    return pk


def ed25519_expand_seed(seed: bytes) -> bytes:
    """libsodium's 64-byte Ed25519 secret key (``seed || public``) for a 32-byte seed."""
    _pk, sk = _b.crypto_sign_seed_keypair(seed)
    return sk


def ed25519_sign(secret_key: bytes, message: bytes) -> bytes:
    """A detached Ed25519 signature (RFC 8032 §5.1.6) of ``message``.

    Args:
        secret_key: the 64-byte libsodium secret key from :func:`ed25519_expand_seed`.
        message: the exact bytes to sign.
    """
    signed = _b.crypto_sign(message, secret_key)
    return signed[:ED25519_SIGNATURE_SIZE]


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> None:
    """Verify a detached Ed25519 signature (libsodium: strict, canonical S, no small order).

    Raises:
        DecryptionError: the signature does not verify.
    """
    if len(signature) != ED25519_SIGNATURE_SIZE:
        raise DecryptionError
    try:
        _b.crypto_sign_open(signature + message, public)
    except nacl.exceptions.BadSignatureError:
        raise DecryptionError from None


def ed25519_seed_to_x25519(seed: bytes) -> bytes:
    """The X25519 private scalar birationally equivalent to an Ed25519 seed.

    This is libsodium's ``crypto_sign_ed25519_sk_to_curve25519``: the first 32 bytes of
    SHA-512(seed), clamped (protocol.md §10.3.1).
    """
    _pk, sk = _b.crypto_sign_seed_keypair(seed)
    return _b.crypto_sign_ed25519_sk_to_curve25519(sk)


def ed25519_public_to_x25519(public: bytes) -> bytes:
    """The X25519 public key (Montgomery u = (1+y)/(1-y)) of a validated Ed25519 key.

    Raises:
        KeyValidationError: libsodium refuses the point.
    """
    try:
        return _b.crypto_sign_ed25519_pk_to_curve25519(public)
    except nacl.exceptions.RuntimeError:
        raise KeyValidationError("Ed25519 public key has no X25519 equivalent") from None


# --- AEAD --------------------------------------------------------------------------------


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """XChaCha20-Poly1305 (IETF, draft-irtf-cfrg-xchacha): ``ciphertext || tag``."""
    return _b.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, key)


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    """Open an XChaCha20-Poly1305 ciphertext.

    Raises:
        DecryptionError: authentication failed (or the input is shorter than a tag).
    """
    if len(ciphertext) < AEAD_TAG_SIZE:
        raise DecryptionError
    try:
        return _b.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key)
    except nacl.exceptions.CryptoError:
        raise DecryptionError from None
