"""Key types (protocol.md §10.3): identity, X25519 and ML-KEM-768 keys.

* Public-key classes validate at construction (``from_bytes``), compare in constant time and
  may be printed (their ``repr`` shows a short fingerprint, never a secret).
* Secret-bearing classes never show key material: ``repr``/``str`` say ``[secret]``, they are
  not comparable, and their bytes leave only through an explicitly named method
  (``private_bytes``) meant for the keystore.
* Key generation draws from an injected ``rng`` (``Callable[[int], bytes]``); nothing here
  reads the OS RNG.

Identity: a single Ed25519 key. Its X25519 form (for the handshake DH and sealed sender) is the
birational map of the same key (``crypto_sign_ed25519_sk_to_curve25519``); protocol.md §10.3.1
gives the reasons for this choice over a separate signed X25519 identity key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, final

from cryptography.hazmat.primitives.asymmetric import mlkem as _mlkem

from clientlib.crypto.primitives import (
    ED25519_PUBLIC_KEY_SIZE,
    ED25519_SEED_SIZE,
    X25519_KEY_SIZE,
    ct_eq,
    ed25519_expand_seed,
    ed25519_public_to_x25519,
    ed25519_seed_to_x25519,
    ed25519_sign,
    ed25519_verify,
    sha256,
    validate_ed25519_public,
    validate_x25519_public,
    x25519,
    x25519_public_from_private,
)
from clientlib.errors import KeyValidationError

__all__ = [
    "MLKEM768_CIPHERTEXT_SIZE",
    "MLKEM768_PUBLIC_KEY_SIZE",
    "MLKEM768_SEED_SIZE",
    "MLKEM768_SHARED_SECRET_SIZE",
    "RNG",
    "IdentityKeyPair",
    "IdentityPublicKey",
    "MLKEMKeyPair",
    "MLKEMPublicKey",
    "X25519KeyPair",
    "X25519PublicKey",
]

#: Injected randomness: ``rng(n)`` returns ``n`` uniformly random bytes (``os.urandom`` in
#: production; a seeded DRBG in tests and vector generation).
RNG = Callable[[int], bytes]

MLKEM768_PUBLIC_KEY_SIZE: Final = 1184
MLKEM768_CIPHERTEXT_SIZE: Final = 1088
MLKEM768_SHARED_SECRET_SIZE: Final = 32
#: FIPS 203 key-generation seed ``d || z`` (the private-key format of cryptography's
#: ``private_bytes_raw``).
MLKEM768_SEED_SIZE: Final = 64


def _draw(rng: RNG, n: int) -> bytes:
    out = rng(n)
    if type(out) is not bytes or len(out) != n:
        raise ValueError("rng returned the wrong number of bytes")
    return out


class _Secret:
    """Mixin: never print key material."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [secret]>"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        # Refuse pickling: secrets leave only through private_bytes().
        raise TypeError(f"{type(self).__name__} cannot be pickled")


def _short(data: bytes) -> str:
    return data[:8].hex()


# --- identity ----------------------------------------------------------------------------

#: Validated identity keys kept so that loading a session record (twice per send and
#: receive) does not re-run the ~0.25 ms subgroup check on keys we already accepted. Only
#: public keys that *passed* validation are kept (a rejected key is checked again every
#: time), keyed by their exact 32 bytes (``type(data) is bytes`` is checked first, so a
#: mutable buffer cannot change a cached entry), least recently used evicted first. Holds
#: no secret.
MAX_VALIDATED_IDENTITIES: Final = 4096
_validated: OrderedDict[bytes, IdentityPublicKey] = OrderedDict()
_validated_lock = threading.Lock()


@final
class IdentityPublicKey:
    """A validated Ed25519 identity public key and its X25519 form."""

    __slots__ = ("_ed", "_x")
    SIZE: Final = ED25519_PUBLIC_KEY_SIZE

    def __init__(self, ed25519: bytes, x25519_public: bytes) -> None:
        # Private: use from_bytes(), which validates.
        self._ed = ed25519
        self._x = x25519_public

    @classmethod
    def from_bytes(cls, data: bytes) -> IdentityPublicKey:
        """Validate a received identity key.

        Raises:
            KeyValidationError: wrong length, non-canonical, small-order or not in the
                prime-order subgroup.
        """
        if type(data) is bytes:
            with _validated_lock:
                hit = _validated.get(data)
                if hit is not None:
                    _validated.move_to_end(data)
                    return hit
        ed = validate_ed25519_public(data)
        x = validate_x25519_public(ed25519_public_to_x25519(ed))
        key = cls(ed, x)
        with _validated_lock:
            _validated[ed] = key
            if len(_validated) > MAX_VALIDATED_IDENTITIES:
                _validated.popitem(last=False)
        return key

    def __bytes__(self) -> bytes:
        return self._ed

    @property
    def x25519(self) -> bytes:
        """The X25519 (Montgomery) form used for Diffie-Hellman."""
        return self._x

    def verify(self, message: bytes, signature: bytes) -> None:
        """Verify an Ed25519 signature by this key.

        Raises:
            DecryptionError: the signature does not verify.
        """
        ed25519_verify(self._ed, message, signature)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdentityPublicKey):
            return NotImplemented
        return ct_eq(self._ed, other._ed)

    def __hash__(self) -> int:
        return hash(self._ed)

    def __repr__(self) -> str:
        return f"IdentityPublicKey({_short(self._ed)}...)"


@final
class IdentityKeyPair(_Secret):
    """An Ed25519 identity key pair.

    Warning:
        This key is the user's long-term identity: it must stay in the encrypted keystore.
    """

    __slots__ = ("_seed", "_sk", "_x_private", "public")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != ED25519_SEED_SIZE:
            raise ValueError("an identity seed is 32 bytes")
        self._seed = seed
        self._sk = ed25519_expand_seed(seed)
        self._x_private = ed25519_seed_to_x25519(seed)
        ed = self._sk[32:]
        self.public = IdentityPublicKey(ed, x25519_public_from_private(self._x_private))

    @classmethod
    def generate(cls, rng: RNG) -> IdentityKeyPair:
        """Create an identity from ``rng(32)``."""
        return cls(_draw(rng, ED25519_SEED_SIZE))

    def private_bytes(self) -> bytes:
        """The 32-byte seed, for the keystore only."""
        return self._seed

    def sign(self, message: bytes) -> bytes:
        """A detached Ed25519 signature of ``message``."""
        return ed25519_sign(self._sk, message)

    def dh(self, public_x25519: bytes) -> bytes:
        """X25519 between this identity's X25519 form and a *validated* public key.

        Raises:
            KeyValidationError: the shared secret is all zero.
        """
        return x25519(self._x_private, public_x25519)


# --- X25519 ------------------------------------------------------------------------------


@final
class X25519PublicKey:
    """A validated X25519 public key (prekeys, ratchet keys, ephemerals)."""

    __slots__ = ("_data",)
    SIZE: Final = X25519_KEY_SIZE

    def __init__(self, data: bytes) -> None:
        self._data = validate_x25519_public(data)

    @classmethod
    def from_bytes(cls, data: bytes) -> X25519PublicKey:
        """Validate a received key.

        Raises:
            KeyValidationError: wrong length, non-canonical or small order.
        """
        return cls(data)

    def __bytes__(self) -> bytes:
        return self._data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, X25519PublicKey):
            return NotImplemented
        return ct_eq(self._data, other._data)

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"X25519PublicKey({_short(self._data)}...)"


@final
class X25519KeyPair(_Secret):
    """An X25519 key pair; the private scalar is 32 bytes from the rng (clamped on use)."""

    __slots__ = ("_private", "public")

    def __init__(self, private: bytes) -> None:
        if type(private) is not bytes or len(private) != X25519_KEY_SIZE:
            raise ValueError("an X25519 private key is 32 bytes")
        self._private = private
        self.public = X25519PublicKey(x25519_public_from_private(private))

    @classmethod
    def generate(cls, rng: RNG) -> X25519KeyPair:
        """Create a key pair from ``rng(32)``."""
        return cls(_draw(rng, X25519_KEY_SIZE))

    def private_bytes(self) -> bytes:
        """The 32-byte private key, for the keystore and session records only."""
        return self._private

    def dh(self, public: X25519PublicKey | bytes) -> bytes:
        """X25519 with a validated public key.

        Raises:
            KeyValidationError: the shared secret is all zero.
        """
        return x25519(self._private, bytes(public))


# --- ML-KEM-768 --------------------------------------------------------------------------


@final
class MLKEMPublicKey:
    """A validated ML-KEM-768 encapsulation key (FIPS 203), 1184 bytes."""

    __slots__ = ("_data", "_key")
    SIZE: Final = MLKEM768_PUBLIC_KEY_SIZE

    def __init__(self, data: bytes) -> None:
        if type(data) is not bytes or len(data) != MLKEM768_PUBLIC_KEY_SIZE:
            raise KeyValidationError("ML-KEM-768 public key must be 1184 bytes")
        try:
            # FIPS 203 §7.2 input check: every coefficient must be reduced mod q.
            self._key = _mlkem.MLKEM768PublicKey.from_public_bytes(data)
        except ValueError:
            raise KeyValidationError("ML-KEM-768 public key fails the modulus check") from None
        self._data = data

    @classmethod
    def from_bytes(cls, data: bytes) -> MLKEMPublicKey:
        """Validate a received key.

        Raises:
            KeyValidationError: wrong length or a coefficient not reduced modulo q.
        """
        return cls(data)

    def encapsulate(self) -> tuple[bytes, bytes]:
        """ML-KEM-768 ``Encaps`` (FIPS 203 §7.2).

        Warning:
            The 32-byte encapsulation coins come from OpenSSL's CSPRNG inside
            ``cryptography``, which exposes no derandomized ``Encaps``: this is the single
            place in clientlib where randomness is not injected (protocol.md §10.2).

        Returns:
            ``(shared_secret, ciphertext)``: 32 and 1088 bytes.
        """
        shared, ciphertext = self._key.encapsulate()
        return shared, ciphertext

    def __bytes__(self) -> bytes:
        return self._data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MLKEMPublicKey):
            return NotImplemented
        return ct_eq(self._data, other._data)

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"MLKEMPublicKey(sha256={_short(sha256(self._data))}...)"


@final
class MLKEMKeyPair(_Secret):
    """An ML-KEM-768 key pair held as its 64-byte FIPS 203 seed ``d || z``."""

    __slots__ = ("_key", "_seed", "public")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != MLKEM768_SEED_SIZE:
            raise ValueError("an ML-KEM-768 seed is 64 bytes")
        self._seed = seed
        self._key = _mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
        self.public = MLKEMPublicKey(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, rng: RNG) -> MLKEMKeyPair:
        """Create a key pair from ``rng(64)`` (``ML-KEM.KeyGen_internal(d, z)``)."""
        return cls(_draw(rng, MLKEM768_SEED_SIZE))

    def private_bytes(self) -> bytes:
        """The 64-byte seed, for the keystore only."""
        return self._seed

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """ML-KEM-768 ``Decaps`` (implicit rejection: a wrong ciphertext yields garbage).

        Raises:
            KeyValidationError: the ciphertext is not 1088 bytes.
        """
        if len(ciphertext) != MLKEM768_CIPHERTEXT_SIZE:
            raise KeyValidationError("ML-KEM-768 ciphertext must be 1088 bytes")
        try:
            return self._key.decapsulate(ciphertext)
        except ValueError:  # pragma: no cover - length already checked
            raise KeyValidationError("ML-KEM-768 ciphertext rejected") from None
