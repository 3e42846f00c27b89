"""Route keys and sealed packets: the destination side of two-hop private routing
(protocol.md §27.3).

A relay D publishes X25519 *route keys* signed by its long-term Ed25519 *relay identity*.
A client seals a frame (a deposit, or one of the public requests) to D's current route key
and hands the packet to a forwarding relay F, which posts it to D's ``/v1/fwd`` without
being able to read it. D opens it here, answers the frame as if it had arrived on its own
route, and seals the reply under a key only the client holds. D learns the frame (the
mailbox) but only F's connection address; F learns the client's address but not the frame.

Theory of operation. Every key derives from one 32-byte seed (``route_key`` setting, or
``<data_dir>/route-key`` made at first start), so that every process of a deployment
derives the same keys without storage:

* relay identity: the Ed25519 key with seed ``HKDF(seed, "blindrelay/v1/relay-identity")``;
* route key ``kid`` (``kid = floor(now / rotation_s)``): the X25519 key with secret
  ``HKDF(seed, "blindrelay/v1/route-key" || u32(kid))``, valid until
  ``exp = (kid + 2) * rotation_s``, i.e. one more period after the next key takes over (the
  overlap window), and published with ``sig = Ed25519(ri, "blindrelay/v1/route-keys" || 0x00
  || u32(kid) || key || u64(exp))``.

This module uses PyNaCl and the standard library directly: the relay never imports client
cryptography (``clientlib.crypto``); the client seals with its own implementation
(``clientlib/client/_route.py``), and the conformance vectors check both.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nacl.bindings as _b
import nacl.exceptions
import nacl.signing

from clientlib.wire.codes import ErrorCode
from clientlib.wire.relay_frames import RouteKeyEntry
from relay.errors import RelayError

__all__ = [
    "PACKET_VERSION",
    "OpenedPacket",
    "RouteKeys",
    "load_route_seed",
    "signed_message",
]

#: Byte 0 of a sealed packet (protocol.md §27.3).
PACKET_VERSION: Final = 1
_HEADER = 1 + 4 + 32 + 24  # version, kid, epk, nonce
_TAG = 16
_IDENTITY_INFO: Final = b"blindrelay/v1/relay-identity"
_KEY_INFO: Final = b"blindrelay/v1/route-key"
_SEAL_INFO: Final = b"blindrelay/v1/route"
_SIG_LABEL: Final = b"blindrelay/v1/route-keys\x00"
_ANSWER_AD: Final = b"blindrelay/v1/route-answer\x00"


def _hkdf(ikm: bytes, info: bytes, length: int = 32, salt: bytes = bytes(32)) -> bytes:
    """HKDF-SHA256 (RFC 5869) with the standard library (the relay never imports
    ``cryptography``, as it never imports client cryptography)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes((i,)), hashlib.sha256).digest()
        out += block
    return out[:length]


def signed_message(kid: int, key: bytes, exp: int) -> bytes:
    """The bytes a route key's signature covers (protocol.md §27.3)."""
    return _SIG_LABEL + struct.pack(">I", kid) + key + struct.pack(">Q", exp)


def load_route_seed(configured: str, data_dir: Path) -> bytes:
    """The 32-byte route seed: ``configured`` (64 hex digits) or, if empty, the file
    ``<data_dir>/route-key`` (created with 32 random bytes, mode 0600, at first use).

    Raises:
        RelayError: never; a ``ValueError`` names a malformed configured seed.
    """
    if configured:
        seed = bytes.fromhex(configured)
        if len(seed) != 32:
            raise ValueError("route_key: 64 hex digits")
        return seed
    path = data_dir / "route-key"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        raw = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
    if len(raw) != 32:
        raise ValueError(f"{path}: a route key file holds exactly 32 bytes")
    return raw


@dataclass(frozen=True, slots=True)
class OpenedPacket:
    """A packet opened by its destination: the inner frame and what seals the answer."""

    inner: bytes
    reply_key: bytes
    epk: bytes

    def __repr__(self) -> str:
        return "OpenedPacket(<secret>)"


class RouteKeys:
    """The relay identity and route keys of one deployment (see the module docstring)."""

    __slots__ = ("_cache", "_identity", "_published", "_rotation", "_seed", "identity")

    def __init__(self, seed: bytes, rotation_s: int) -> None:
        if len(seed) != 32 or rotation_s < 60:
            raise ValueError("route keys need a 32-byte seed and a rotation of 60 s or more")
        self._seed = seed
        self._rotation = rotation_s
        #: kid -> (secret, public): derived once per key (a few keys live at a time).
        self._cache: dict[int, tuple[bytes, bytes]] = {}
        self._published: tuple[int, tuple[RouteKeyEntry, ...]] | None = None
        self._identity = nacl.signing.SigningKey(_hkdf(seed, _IDENTITY_INFO))
        #: The 32-byte relay identity key (Ed25519, public).
        self.identity = bytes(self._identity.verify_key)

    def __repr__(self) -> str:
        return "RouteKeys(<secret>)"

    def _pair(self, kid: int) -> tuple[bytes, bytes]:
        pair = self._cache.get(kid)
        if pair is None:
            secret = _hkdf(self._seed, _KEY_INFO + struct.pack(">I", kid))
            pair = (secret, _b.crypto_scalarmult_base(secret))
            if len(self._cache) >= 8:
                self._cache.clear()
            self._cache[kid] = pair
        return pair

    def current_kid(self, now: float) -> int:
        return int(now) // self._rotation

    def expiry(self, kid: int) -> int:
        return (kid + 2) * self._rotation

    def public(self, kid: int) -> bytes:
        return self._pair(kid)[1]

    def published(self, now: float) -> tuple[RouteKeyEntry, ...]:
        """The current key and the one before it (still inside its overlap window),
        newest first, each signed by the relay identity."""
        cur = self.current_kid(now)
        if self._published is not None and self._published[0] == cur:
            return self._published[1]
        out = []
        for kid in (cur, cur - 1):
            if kid < 0:
                continue
            key, exp = self.public(kid), self.expiry(kid)
            sig = self._identity.sign(signed_message(kid, key, exp)).signature
            out.append(RouteKeyEntry(kid=kid, key=key, exp=exp, sig=sig))
        self._published = (cur, tuple(out))
        return self._published[1]

    def open(self, pkt: bytes, now: float) -> OpenedPacket:
        """Open a packet sealed to one of our route keys (protocol.md §27.3, destination).

        Raises:
            RelayError: ``MALFORMED`` (too short, unknown packet version), ``RKEY`` (a key id
                that is not current or inside its overlap window, or a packet that does not
                authenticate under it: sealed to another key).
        """
        if len(pkt) < _HEADER + _TAG or pkt[0] != PACKET_VERSION:
            raise RelayError(ErrorCode.MALFORMED)
        (kid,) = struct.unpack(">I", pkt[1:5])
        if kid not in (self.current_kid(now), self.current_kid(now) - 1) or now >= self.expiry(kid):
            raise RelayError(ErrorCode.RKEY)
        epk, nonce = pkt[5:37], pkt[37:61]
        sk, pk = self._pair(kid)
        try:
            shared = _b.crypto_scalarmult(sk, epk)
        except nacl.exceptions.RuntimeError:
            raise RelayError(ErrorCode.RKEY) from None
        if shared == bytes(32):
            raise RelayError(ErrorCode.RKEY)
        okm = _hkdf(shared, _SEAL_INFO, 64, salt=epk + pk)
        try:
            inner = _b.crypto_aead_xchacha20poly1305_ietf_decrypt(
                pkt[_HEADER:], pkt[:37], nonce, okm[:32]
            )
        except nacl.exceptions.CryptoError:
            raise RelayError(ErrorCode.RKEY) from None
        return OpenedPacket(inner, okm[32:], epk)

    @staticmethod
    def seal_answer(opened: OpenedPacket, reply: bytes) -> bytes:
        """``n || XChaCha20-Poly1305(kr, n, reply, ad = label || epk)`` for the client."""
        nonce = os.urandom(24)
        return nonce + _b.crypto_aead_xchacha20poly1305_ietf_encrypt(
            reply, _ANSWER_AD + opened.epk, nonce, opened.reply_key
        )


def verify_entry(identity: bytes, entry: RouteKeyEntry) -> bool:
    """Whether ``entry`` carries a valid signature of the relay identity ``identity``."""
    try:
        nacl.signing.VerifyKey(identity).verify(
            signed_message(entry.kid, entry.key, entry.exp), entry.sig
        )
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        return False
    return True
